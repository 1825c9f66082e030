"""Reader for labelled face photos: one face per image, framed by the photo (faces-in-the-wild, LFW-style crops,
a user's folder of faces). Two shapes:

  labels.csv  `image,emotion[,identity]` (images beside it or under images/), emotion spelled as any name of
              converters.labels.NAME_ALIASES; identity groups one person's photos
  a folder    `<class name>/*.jpg` (the folder names are the labels; no identities)

No boxes come with such photos; each is found with OpenCV's Haar cascade (converters.face_boxes: why that one),
mapped onto the detection sets' box convention by a BoxFit. A photo where the cascade finds no face gets the
median framing the cascade finds on these photos (FALLBACK_BOX), reported as a fix, never dropped silently.
Splits are identity-disjoint: a person is on one side only (`identity_split`).
"""
from __future__ import annotations

import csv
import hashlib
import io
from pathlib import Path

import cv2
import numpy as np

from .affectnet import R_CONTEMPT, R_OUTSIDE, probe_image, path_inside
from .errors import EmoDetError
from .io import images_in
from .face_boxes import BoxFit, haar_cascade, haar_faces
from .labels import class_names, label_code
from .parallel import parallel_map
from .records import FaceRecord, ReadResult, Reject

# Median Haar box on 400 faces-in-the-wild photos, as fractions of the side (x, y, w, h): the cascade found a face
# in 91.5 % of them; the 10th-90th percentile of its side was 0.79-0.88.
FALLBACK_BOX = (0.075, 0.075, 0.8375, 0.8375)
MIN_FACE_FRACTION = 0.3  # a face photo's face is at least this share of the short side

R_CLASS = "unknown emotion name"
R_COLUMNS = "wrong number of columns"
FIX_NO_FACE = "no face found by the cascade: median framing used"


def identity_split(identity: str, val_fraction: float, seed: int = 0) -> str:
    """'val' or 'train' from a hash of the identity: stable across runs and machines, the same person always on
    one side; about `val_fraction` of the identities land in val."""
    digest = hashlib.sha1(f"{seed}:{identity}".encode()).digest()
    return "val" if int.from_bytes(digest[:8], "big") / 2 ** 64 < val_fraction else "train"


def photo_rows(root: Path) -> tuple[str, list[tuple[int, list[str]]], Path]:
    """(source, [(row number, [image, emotion, identity])], image folder) from labels.csv or class folders."""
    root = Path(root)
    csv_path = root if root.is_file() else root / "labels.csv"
    if csv_path.is_file():
        images = csv_path.parent / "images" if (csv_path.parent / "images").is_dir() else csv_path.parent
        text = csv_path.read_bytes().decode("utf-8-sig", errors="replace")
        rows = []
        for n, fields in enumerate(csv.reader(io.StringIO(text, newline="")), start=1):
            if n == 1 and fields and fields[0].strip().lower() == "image":
                continue
            if fields and any(f.strip() for f in fields):
                rows.append((n, [f.strip() for f in fields]))
        return str(csv_path), rows, images
    if not root.is_dir():
        raise EmoDetError(f"{root}: no labels.csv and not a folder of class folders")
    rows = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for image in images_in(folder):
            rows.append((len(rows) + 1, [f"{folder.name}/{image.name}", folder.name, ""]))
    if not rows:
        raise EmoDetError(f"{root}: no labels.csv and no <class>/*.jpg images")
    return str(root), rows, root


def face_box(path: Path, size: tuple[int, int], fit: BoxFit) -> tuple[tuple[float, float, float, float], bool]:
    """The photo's face box (x, y, w, h) in pixels, and whether the cascade found it (else FALLBACK_BOX)."""
    gray = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE | cv2.IMREAD_IGNORE_ORIENTATION)
    w, h = size
    boxes = haar_faces(gray, haar_cascade(), min_size=max(24, int(MIN_FACE_FRACTION * min(w, h)))) \
        if gray is not None else np.zeros((0, 4))
    if len(boxes):
        best = boxes[np.argmax(boxes[:, 2] * boxes[:, 3])]
        found = True
    else:
        best = np.array(FALLBACK_BOX) * [w, h, w, h]
        found = False
    x, y, bw, bh = fit.apply(best)[0]
    x1, y1, x2, y2 = max(x, 0.0), max(y, 0.0), min(x + bw, float(w)), min(y + bh, float(h))
    return (x1, y1, x2 - x1, y2 - y1), found


def _box_job(args):
    path, size, fit = args
    return face_box(path, size, fit)


def declared_names(root: Path) -> tuple[str, ...]:
    """The classes the photos declare themselves: their class folders, or the emotions of labels.csv, sorted."""
    _, rows, _ = photo_rows(root)
    return tuple(sorted({fields[1].strip().lower() for _, fields in rows if len(fields) > 1 and fields[1].strip()}))


def read_face_photos(root: Path, split: str | None = None, n_classes: int = 7, val_fraction: float = 0.2,
                     seed: int = 0, fit: BoxFit = BoxFit(), workers: int = 2, names=None) -> ReadResult:
    """The faces of `split` ('train'/'val' by identity; None = every row) as records with derived boxes, labelled
    in `names` (a dataset's own classes; default the canonical table of `n_classes`)."""
    names = names or class_names(n_classes)
    source, rows, images = photo_rows(root)
    keep, rejects = [], []
    for n, fields in rows:
        if len(fields) < 2:
            rejects.append(Reject(source, n, R_COLUMNS, f"{len(fields)}; expected image,emotion[,identity]"))
            continue
        image = path_inside(images, fields[0])
        if image is None:
            rejects.append(Reject(source, n, R_OUTSIDE, fields[0]))
            continue
        identity = fields[2] if len(fields) > 2 and fields[2] else Path(fields[0]).stem
        if split is not None and identity_split(identity, val_fraction, seed) != split:
            continue
        try:
            code = label_code(fields[1], names)
        except KeyError as exc:
            contempt = "needs --classes 8" in exc.args[0]
            rejects.append(Reject(source, n, R_CONTEMPT if contempt else R_CLASS,
                                  "" if contempt else exc.args[0].split(";")[0], str(image)))
            continue
        size = probe_image(image)
        if isinstance(size, str):
            rejects.append(Reject(source, n, size, "", str(image)))
            continue
        keep.append((n, image, code, size))
    boxes = parallel_map(_box_job, [(image, size, fit) for _, image, _, size in keep], workers)
    records, fixes = [], []
    for (n, image, code, size), (box, found) in zip(keep, boxes):
        if not found:
            fixes.append(Reject(source, n, FIX_NO_FACE, "", str(image)))
        records.append(FaceRecord(image=image, box=box, expression=code, source=source, row=n,
                                  face_id=f"p{n:07d}", image_size=size))
    return ReadResult(records, rejects, fixes)
