"""The web app (scripts/app.py): uploads analysed or refused with a message, and, in headless Chromium, a real
photo and a corrupt file uploaded through the page with nothing fetched from outside this machine."""
from __future__ import annotations

import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from converters.settings import DEFAULT_DETECTOR, PROJECT_ROOT, WEIGHTS_DIR, affectnet_sample_dir

pytest.importorskip("gradio", reason="gradio not installed (make test installs requirements.txt)")
DETECTOR = DEFAULT_DETECTOR if DEFAULT_DETECTOR.exists() else WEIGHTS_DIR / "scenes-det.pt"


@pytest.fixture(scope="module")
def analyzer():
    from scripts.app import Analyzer
    return Analyzer(DETECTOR)


def _png_header_only(path: Path, width: int, height: int) -> None:
    """A PNG whose header claims width x height, with almost no pixel data (a decompression bomb's shape)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 10)) +
                     chunk(b"IEND", b""))


def test_uploads_are_analysed_or_refused_with_a_sentence(analyzer, tmp_path):
    from scripts.app import analyze_uploads
    good = tmp_path / "scene.jpg"
    cv2.imwrite(str(good), np.full((240, 320, 3), 128, np.uint8))
    corrupt = tmp_path / "broken.jpg"
    corrupt.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    bomb = tmp_path / "huge.png"
    _png_header_only(bomb, 30000, 30000)
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    gallery, table, bars, csv_path, status = analyze_uploads(analyzer, [good, corrupt, bomb, text], "two-stage", 0.25)
    assert len(gallery) == 1 and status.startswith("1 image(s)")
    assert "broken.jpg: not a readable image" in status and "huge.png: more pixels than this app decodes" in status
    assert "notes.txt: not an image or a video" in status
    assert table == [] and csv_path is None  # a grey picture has no face


def test_a_video_upload_is_sampled_into_frames(analyzer, tmp_path):
    from scripts.app import VIDEO_FRAMES, analyze_uploads
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 10, (160, 120))
    for k in range(40):
        writer.write(np.full((120, 160, 3), 3 * k, np.uint8))
    writer.release()
    gallery, *_, status = analyze_uploads(analyzer, [clip], "one-stage", 0.25)
    assert len(gallery) == VIDEO_FRAMES and gallery[-1][1] == "clip.mp4 frame 39"


APP_CONF = 0.25  # the app's confidence slider starts here


def _real_photo(analyzer) -> Path | None:
    """The first AffectNet sample photo in which the app's detector finds a face at the app's starting confidence:
    these tests are about the app, not about how many of those photos the detector finds (BENCHMARKS.md)."""
    import cv2
    root = affectnet_sample_dir() / "Manually_Annotated_Images"
    for photo in sorted(root.rglob("*.jpg")) if root.is_dir() else []:
        if len(analyzer.analyze(cv2.imread(str(photo)), "one-stage", APP_CONF)[1]):
            return photo
    return None


@pytest.fixture(scope="module")
def served(analyzer):
    """The app on a free port, with every outward connection of this process refused and recorded."""
    from scripts.app import build_app
    from scripts.app_browser import chromium_paths, free_port, serve
    if chromium_paths() is None:
        pytest.skip("Chromium not installed (apt-get install chromium chromium-driver; make test does it as root)")
    outward, real_connect = [], socket.socket.connect

    def loopback_only(sock, address):
        host = address[0] if isinstance(address, tuple) else str(address)
        if isinstance(address, tuple) and host not in ("127.0.0.1", "localhost", "::1"):
            outward.append(address)
            raise OSError(f"outward connection refused in the test: {address}")
        return real_connect(sock, address)
    socket.socket.connect = loopback_only
    app = build_app(analyzer)
    port = free_port()
    threading.Thread(target=serve, args=(app, port), daemon=True).start()
    time.sleep(3)
    yield f"http://127.0.0.1:{port}/", outward
    app.close()
    socket.socket.connect = real_connect


def test_in_a_real_browser_a_photo_is_annotated_and_a_corrupt_file_gets_a_message(served, analyzer, tmp_path):
    from scripts.app_browser import analyse, browser, requested_urls
    url, outward = served
    photo = _real_photo(analyzer)
    if photo is None:  # no shared datasets: a synthetic sample face
        from converters.synthetic import generate_sample
        generate_sample(tmp_path / "s", n_train=2, n_val=1, seed=1, workers=1, progress=False)
        photo = sorted((tmp_path / "s").rglob("*.jpg"))[0]
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(photo.read_bytes()[:200])  # a truncated JPEG
    driver = browser()
    try:
        shown = analyse(driver, url, [photo])
        assert shown["images"] >= 1 and shown["status"].startswith("1 image(s)")
        assert shown["rows"] and all(r[0] == photo.name for r in shown["rows"])
        bad = analyse(driver, url, [corrupt])
        assert "corrupt.jpg: not a readable image" in bad["status"] and "Traceback" not in driver.page_source
        urls = requested_urls(driver)
    finally:
        driver.quit()
    assert urls and all(u.startswith(("http://127.0.0.1", "data:", "blob:")) for u in urls), \
        [u for u in urls if not u.startswith("http://127.0.0.1")][:5]
    assert outward == []


def test_a_webcam_picture_takes_the_uploads_path_with_its_colours_kept(analyzer):
    from scripts.app import analyze_uploads, capture_file
    rgb = np.zeros((120, 160, 3), np.uint8)
    rgb[..., 0] = 200  # red in RGB
    path = capture_file(rgb)
    assert cv2.imread(str(path))[0, 0].tolist() == [0, 0, 200]  # BGR on disk
    gallery, *_, status = analyze_uploads(analyzer, [path], "one-stage", 0.25)
    assert len(gallery) == 1 and gallery[0][0][0, 0].tolist() == [200, 0, 0] and status.startswith("1 image(s)")


def test_the_apps_files_go_when_its_process_ends():
    """Each request's faces table and webcam picture go to one folder of the process, removed at its exit: an
    app serving for weeks (or a test run) leaves nothing in /tmp."""
    code = ("import numpy as np; from scripts.app import capture_file, scratch_dir; "
            "p = capture_file(np.zeros((8, 8, 3), np.uint8)); assert p.exists() and scratch_dir() in p.parents; "
            "print(scratch_dir())")
    out = subprocess.run([sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-500:]
    folder = Path(out.stdout.strip())
    assert folder.name.startswith("emodet-app-") and not folder.exists()
