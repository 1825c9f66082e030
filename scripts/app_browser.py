"""Drive the web app in headless Chromium (Debian's `chromium` + `chromium-driver`, through Selenium): upload files,
wait for the result, read what the page shows, record every URL the browser requested, take a screenshot.
Used by tests/test_app.py and to make the README's screenshot:

  python -m scripts.app_browser --shot docs/app.png FILE [FILE ...]   # starts the app on a free port itself
"""
from __future__ import annotations

import argparse
import json
import shutil
import socket
import threading
import time
from pathlib import Path

from converters.errors import EmoDetError, run_cli
from converters.settings import DEFAULT_DETECTOR, DEFAULT_CLASSIFIER


def chromium_paths() -> tuple[str, str] | None:
    """(browser, driver) if Debian's chromium and chromium-driver are installed."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    return (browser, driver) if browser and driver else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(app, port: int) -> None:
    """Launch a built Gradio app on 127.0.0.1:port without blocking (the launch returns once it serves)."""
    from scripts.app import MAX_UPLOAD_MB
    app.launch(server_name="127.0.0.1", server_port=port, share=False, prevent_thread_lock=True, quiet=True,
               max_file_size=f"{MAX_UPLOAD_MB}mb", show_error=False)


def browser(width: int = 1400, height: int = 1100):
    """A headless Chromium driven by Selenium, logging its network requests; nothing is downloaded (the driver
    is the system's chromedriver, not Selenium Manager's)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    paths = chromium_paths()
    if paths is None:
        raise EmoDetError("Chromium not found: apt-get install chromium chromium-driver")
    opts = webdriver.ChromeOptions()
    opts.binary_location = paths[0]
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              f"--window-size={width},{height}", "--disable-background-networking", "--disable-component-update",
              "--disable-sync", "--no-first-run", "--disable-features=OptimizationHints,MediaRouter"):
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    return webdriver.Chrome(service=Service(paths[1]), options=opts)


def requested_urls(driver) -> list[str]:
    """Every URL the page asked for since the last call (from Chromium's performance log)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg.get("method") == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


def analyse(driver, url: str, files: list[Path], method: str | None = None, timeout: float = 120) -> dict:
    """Open the app, upload `files`, press Analyse and wait for the status line to change; returns what the page
    shows: status text, gallery image count, face table rows (lists of cell texts)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait
    driver.get(url)
    wait = WebDriverWait(driver, timeout)
    wait.until(ec.presence_of_element_located((By.CSS_SELECTOR, "#uploads input[type=file]")))
    if method:
        driver.find_element(By.XPATH, f"//*[@id='method']//input[@value='{method}']").click()
    driver.find_element(By.CSS_SELECTOR, "#uploads input[type=file]").send_keys("\n".join(str(Path(f).resolve())
                                                                                        for f in files))
    # the upload finishes when each file is listed in the component (name and suffix on two lines)
    wait.until(lambda d: all(Path(f).stem in d.find_element(By.ID, "uploads").text for f in files))
    driver.find_element(By.ID, "analyse").click()
    wait.until(lambda d: "face(s) found" in d.find_element(By.ID, "status").text)
    time.sleep(1.0)  # let the gallery and table render
    return dict(status=driver.find_element(By.ID, "status").text,
                images=len(driver.find_elements(By.CSS_SELECTOR, "#gallery img")),
                rows=table_rows(driver.find_element(By.ID, "faces").text))


def table_rows(text: str) -> list[list[str]]:
    """The face table's rows from its rendered text (one cell per line after the label and the header; the
    DOM renders only the rows in view, the text holds them all)."""
    from scripts.app import TABLE_COLUMNS
    cells = text.split("\n")
    n = len(TABLE_COLUMNS)
    for i in range(len(cells) - n + 1):
        if cells[i:i + n] == TABLE_COLUMNS:
            body = cells[i + n:]
            return [body[k:k + n] for k in range(0, len(body) - n + 1, n)]
    return []


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.app_browser", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("files", type=Path, nargs="+", help="photos (or a video) to upload")
    p.add_argument("--shot", type=Path, required=True, help="PNG screenshot to write")
    p.add_argument("--method", choices=("one-stage", "two-stage", "hybrid"), default="one-stage")
    p.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR)
    p.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from scripts.app import Analyzer, build_app
    port = free_port()
    app = build_app(Analyzer(args.detector, args.classifier))
    threading.Thread(target=serve, args=(app, port), daemon=True).start()
    time.sleep(3)
    driver = browser()
    try:
        shown = analyse(driver, f"http://127.0.0.1:{port}/", args.files, args.method)
        args.shot.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(args.shot))
        outside = [u for u in requested_urls(driver) if not u.startswith(("http://127.0.0.1", "data:", "blob:"))]
    finally:
        driver.quit()
        app.close()
    print(f"{shown['status']}\nscreenshot {args.shot}; requests outside 127.0.0.1: {len(outside)} {outside[:3]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
