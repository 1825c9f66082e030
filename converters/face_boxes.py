"""Face boxes where a dataset gives none: OpenCV's Haar cascade (its weights ship inside the opencv wheel, so it
runs offline with nothing to download) and the BoxFit that maps its square onto a dataset's box convention.

Why Haar for face photos: they are tight, mostly frontal crops (the face fills the frame), where the cascade finds
nearly every face and its boxes are stable; the two-stage baseline uses the same cascade, so the boxes we derive
frame faces the way that baseline sees them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import cv2
import numpy as np

from .errors import EmoDetError

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


@dataclass(frozen=True)
class BoxFit:
    """Ground-truth box from a detector box (x, y, w, h): centre moved by (dx, dy) detector sides, side x scale."""
    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0
    pairs: int = 0  # how many matched boxes the fit was measured on (0: identity)

    def apply(self, boxes: np.ndarray) -> np.ndarray:
        b = np.asarray(boxes, float).reshape(-1, 4)
        cx = b[:, 0] + b[:, 2] * (0.5 + self.dx)
        cy = b[:, 1] + b[:, 3] * (0.5 + self.dy)
        w, h = b[:, 2] * self.scale, b[:, 3] * self.scale
        return np.stack([cx - w / 2, cy - h / 2, w, h], 1)


def fitted_box(detected: np.ndarray, truth: np.ndarray) -> BoxFit:
    """Median shift and scale over matched (detector box, ground-truth box) pairs, both (n, 4) x, y, w, h.
    Medians, because a few loose matches of a neighbouring face would pull a mean."""
    d, t = np.asarray(detected, float).reshape(-1, 4), np.asarray(truth, float).reshape(-1, 4)
    if not len(d):
        raise EmoDetError("no detector box matched a ground-truth face: nothing to fit the boxes on")
    dx = ((t[:, 0] + t[:, 2] / 2) - (d[:, 0] + d[:, 2] / 2)) / d[:, 2]
    dy = ((t[:, 1] + t[:, 3] / 2) - (d[:, 1] + d[:, 3] / 2)) / d[:, 3]
    scale = np.sqrt(t[:, 2] * t[:, 3]) / np.sqrt(d[:, 2] * d[:, 3])
    return BoxFit(float(np.median(scale)), float(np.median(dx)), float(np.median(dy)), len(d))


@lru_cache(maxsize=4)  # loading the XML takes longer than detecting in a small photo
def haar_cascade(name: str = DEFAULT_CASCADE) -> cv2.CascadeClassifier:
    path = Path(cv2.data.haarcascades) / name
    cascade = cv2.CascadeClassifier(str(path))
    if cascade.empty():
        raise EmoDetError(f"{path}: no such Haar cascade in this OpenCV (see {cv2.data.haarcascades})")
    return cascade


def haar_faces(gray: np.ndarray, cascade: cv2.CascadeClassifier, min_size: int = 24,
               neighbours: int = 3) -> np.ndarray:
    """(n, 4) x, y, w, h face boxes. neighbours=3: on the validation scenes it found more faces than 4 or 6 at
    equal mAP, and weighting the score by how many raw hits were merged into a box (the cascade's only measure
    of confidence) did not rank better than the classifier's probability."""
    boxes, _ = cascade.detectMultiScale2(gray, scaleFactor=1.1, minNeighbors=neighbours,
                                         minSize=(min_size, min_size))
    return np.asarray(boxes, float).reshape(-1, 4)




def load_fit(path: Path | None) -> BoxFit:
    """The BoxFit saved at `path` (identity when None)."""
    if path is None:
        return BoxFit()
    try:
        return BoxFit(**json.loads(Path(path).read_text()))
    except FileNotFoundError:
        raise EmoDetError(f"{path}: no box fit; make one with `python -m scripts.two_stage fit --gt VAL_FOLDER`") \
            from None
    except (TypeError, ValueError) as e:
        raise EmoDetError(f"{path}: not a box-fit JSON ({e})") from None
