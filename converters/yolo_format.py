"""The one owner of YOLO label and prediction lines: `class cx cy w h [conf]`, coordinates normalised to [0, 1]
(Ultralytics and Darknet read the same files; shared/ENGINES.md)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from .errors import EmoDetError


def yolo_line(class_id: int, box, width: int, height: int) -> str:
    """`class cx cy w h` for a pixel box (x, y, w, h), normalised to the image and clipped to [0, 1]."""
    x, y, w, h = box
    x1, y1 = min(max(x / width, 0.0), 1.0), min(max(y / height, 0.0), 1.0)
    x2, y2 = min(max((x + w) / width, 0.0), 1.0), min(max((y + h) / height, 0.0), 1.0)
    return f"{class_id} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"


def parse_yolo_line(line: str, with_conf: bool = False) -> list[float] | None:
    """[class, cx, cy, w, h(, conf)] of one line, None for a blank line; ValueError says what is wrong (wrong
    column count, not numeric, not finite: a NaN would otherwise score as a silent miss or a perfect hit)."""
    parts = line.split()
    if not parts:
        return None
    want = 6 if with_conf else 5
    if len(parts) != want:
        raise ValueError(f"{len(parts)} columns, expected {want} "
                         f"({'class cx cy w h conf' if with_conf else 'class cx cy w h'})")
    try:
        values = [float(v) for v in parts]
    except ValueError:
        raise ValueError(f"not numeric: {line.strip()!r}") from None
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"not finite: {line.strip()!r}")
    return values


def read_yolo_rows(path: Path, with_conf: bool = False) -> np.ndarray:
    """One YOLO file -> (n, 5) or (n, 6) rows as written (class, cx, cy, w, h[, conf]); EmoDetError names file:line."""
    rows = []
    for k, line in enumerate(Path(path).read_text().splitlines(), start=1):
        try:
            row = parse_yolo_line(line, with_conf)
        except ValueError as exc:
            raise EmoDetError(f"{path}:{k}: {exc}") from None
        if row is not None:
            rows.append(row)
    return np.asarray(rows, float).reshape(-1, 6 if with_conf else 5)


def xywh_to_xyxy(a: np.ndarray) -> np.ndarray:
    cx, cy, w, h = np.asarray(a, float).reshape(-1, 4).T
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 1)
