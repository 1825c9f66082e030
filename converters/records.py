"""The one record type for a face annotation, and the record of a rejected input row."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass(frozen=True, eq=False)
class FaceRecord:
    """One annotated face.

    `image` is the image file; datasets that ship pixels instead of files (FER2013) leave it as the source
    file and put the face in `pixels`. `box` is (x, y, w, h) in pixels of the full image, already clipped
    to the image. `expression` is a canonical code (converters.labels).
    """
    image: Path
    box: tuple[float, float, float, float]
    expression: int
    source: str
    row: int
    landmarks: np.ndarray | None = None  # (68, 2) float32, full-image pixels
    valence: float | None = None
    arousal: float | None = None
    pixels: np.ndarray | None = field(default=None, repr=False)  # uint8 (H, W) or (H, W, 3)
    face_id: str = ""  # stable id, unique within a split; used in every written file name
    image_size: tuple[int, int] | None = None  # (width, height) of the full image
    image_id: str = ""  # file stem of the image in a YOLO set; "" = i<row> (one CSV row per image)

    @property
    def where(self) -> str:
        return f"{self.source}:{self.row}"


@dataclass(frozen=True)
class Reject:
    """An input row that was not converted, and why."""
    source: str
    row: int
    reason: str
    detail: str = ""
    image: str = ""  # the image the row refers to, when known

    def line(self) -> str:
        return f"{self.source}:{self.row}: {self.reason}" + (f" ({self.detail})" if self.detail else "")


class Fix(Reject):
    """An input row that was converted after a fix (a box clipped to its image), and which fix."""


@dataclass
class ReadResult:
    """What a reader returns: the good records, the rejected rows, and notes on rows kept with a fix."""
    records: list[FaceRecord]
    rejects: list[Reject]
    fixes: list[Reject] = field(default_factory=list)
    digest: str | None = None  # what the outputs depend on, where the reader knows it cheaper than the records
