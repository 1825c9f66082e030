"""Importing Ultralytics offline (shared/ENGINES.md): YOLO_OFFLINE/YOLO_AUTOINSTALL/YOLO_CONFIG_DIR set before the
first import, settings sync off, and a local TTF standing in for Arial.ttf so plotting never reaches for the
network. Its own module because both engines need it: scripts.ultra trains detectors, scripts.torch_models builds
the v8n-cls backbone classifier from Ultralytics' modules."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from converters.settings import RUNS_DIR

# The user's thread setting as it was before Ultralytics' import, which sets OMP_NUM_THREADS to 1 where it is unset
OMP_THREADS_GIVEN = os.environ.get("OMP_NUM_THREADS", "")


def offline_env(config_dir: Path | None = None) -> None:
    """Environment that keeps Ultralytics offline; must run before anything imports it (also before
    torch.load of an Ultralytics checkpoint, which imports it while unpickling)."""
    cfg = Path(config_dir or os.environ.get("YOLO_CONFIG_DIR") or RUNS_DIR / "ultralytics-config")
    os.environ["YOLO_CONFIG_DIR"] = str(cfg)
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "false"
    os.environ.setdefault("MPLBACKEND", "Agg")
    if not sys.stderr.isatty():
        # Ultralytics' progress bars redraw with \r every 0.1 s, hundreds of fragments per line in a log file or
        # CI; it prints one plain line per bar only where it believes it runs in CI, which its utils/tqdm.py
        # decides from this variable's presence alone (its other CI checks need GITHUB_WORKFLOW and RUNNER_OS too)
        os.environ.setdefault("GITHUB_ACTIONS", "0")
    font = cfg / "Ultralytics" / "Arial.ttf"
    if not font.exists():
        import matplotlib
        font.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf", font)
        shutil.copyfile(font, font.with_name("Arial.Unicode.ttf"))


def ultralytics(config_dir: Path | None = None):
    """Import ultralytics with every network path switched off; returns the module."""
    offline_env(config_dir)
    import ultralytics as ul
    from ultralytics.utils import SETTINGS
    SETTINGS.update({"sync": False, "hub": False} if "hub" in SETTINGS else {"sync": False})
    return ul
