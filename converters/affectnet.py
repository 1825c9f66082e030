"""Reader for AffectNet annotation CSVs (Mollahosseini et al. 2017).

Columns: subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression,
valence, arousal. Image paths are relative to `Manually_Annotated_Images/`. Landmarks are 68 `x;y` pairs
joined by `;`. Valence/arousal lie in [-1, 1], -2 meaning not applicable.
"""
from __future__ import annotations

import csv
import math
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .labels import AFFECTNET_NON_EXPRESSIONS
from .records import FaceRecord, ReadResult, Reject

HEADER = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
          "expression", "valence", "arousal")
IMAGES_DIRNAME = "Manually_Annotated_Images"
SPLIT_CSV = {"training": "train", "validation": "val", "test": "test"}

# Reasons are fixed strings so the summary can count them.
R_COLUMNS = "wrong number of columns"
R_MISSING = "image missing"
R_EMPTY = "image empty (0 bytes)"
R_UNDECODABLE = "image undecodable"
R_BOX_TEXT = "box not numeric"
R_BOX_NEG = "box negative or empty"
R_BOX_OUT = "box outside image"
R_EXPR_TEXT = "expression not an integer"
R_NOT_EXPR = "not an expression"
R_CONTEMPT = "contempt in 7-class mode"
R_LANDMARKS = "landmarks malformed"
R_VA = "valence/arousal not numeric"
R_DUPLICATE = "duplicate row"
R_OUTSIDE = "path outside the image folder"
R_UNPARSABLE = "line not parsable as CSV"
R_TRUNCATED = "image truncated (no JPEG end marker)"
R_TOO_LARGE = "image too large to decode"
FIX_CLIPPED = "box clipped to image"


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(text)
    return value


def parse_landmarks(text: str) -> np.ndarray | None:
    """68 (x, y) points from AffectNet's `x1;y1;x2;y2;...`; None for an empty field. Raises ValueError."""
    text = text.strip().strip(";")
    if not text:
        return None
    fields = text.split(";")
    if len(fields) != 136:
        raise ValueError(f"{len(fields)} numbers, expected 136")
    try:  # NumPy parses the 136 numbers in C; this runs once per row of a 400k-row CSV
        values = np.array(fields, dtype=np.float64)
    except ValueError:
        raise ValueError("non-numeric landmark") from None
    points = values.astype(np.float32)  # 1e39 is finite in float64 and inf in float32: check what we keep
    if not np.isfinite(points).all():
        raise ValueError("non-finite landmark")
    return points.reshape(68, 2)


def format_landmarks(points: np.ndarray | None) -> str:
    if points is None:
        return ""
    return ";".join(f"{v:.2f}" for v in np.asarray(points, dtype=np.float64).reshape(-1))


def clipped_box(box: tuple[float, float, float, float], width: int, height: int
                ) -> tuple[tuple[float, float, float, float], float]:
    """The box clipped to the image, and the fraction of the original area that lies inside."""
    x, y, w, h = box
    x1, y1 = max(x, 0.0), max(y, 0.0)
    x2, y2 = min(x + w, float(width)), min(y + h, float(height))
    inside = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    return (x1, y1, max(0.0, x2 - x1), max(0.0, y2 - y1)), inside / (w * h)


def image_size(path: Path) -> tuple[int, int]:
    """(width, height) from the file header; raises FileNotFoundError, EOFError/OSError if unreadable."""
    with Image.open(path) as im:
        return im.size


def _rows(csv_path: Path):
    """(line number, fields) for every data row; tolerates files with or without the header line. Each physical
    line is parsed on its own: AffectNet's fields never span lines, and a stray quote must cost one row (reported)
    instead of swallowing the rows after it. A line that csv cannot parse at all (a field over csv's 128 KiB
    limit) yields None, reported by the caller."""
    try:
        text = csv_path.read_bytes().decode("utf-8-sig", errors="replace")
    except OSError as exc:
        from .errors import EmoDetError
        raise EmoDetError(f"{csv_path}: cannot read ({exc.strerror})") from None
    text = text.replace("\x00", "")  # csv refuses NUL bytes; a NUL-damaged row is then reported, not fatal
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.replace(",", "").strip():  # blank (or only separators): nothing to convert or report
            continue
        try:
            fields = next(csv.reader([line]), [])
        except csv.Error:
            yield number, None
            continue
        if number == 1 and fields and fields[0].strip() == HEADER[0]:
            continue
        yield number, fields


def read_affectnet(csv_path: Path, images_root: Path | None = None, n_classes: int = 7,
                   check_images: bool = True) -> ReadResult:
    """Validate every row of an AffectNet CSV and return the usable faces plus each rejected row with its reason.

    `images_root` defaults to `<csv folder>/Manually_Annotated_Images`. A box that is at least half inside the
    image is clipped (and noted in `fixes`); otherwise the row is rejected.
    """
    csv_path = Path(csv_path)
    images_root = Path(images_root) if images_root else csv_path.parent / IMAGES_DIRNAME
    source = str(csv_path)
    records, rejects, fixes = [], [], []
    sizes: dict[Path, tuple[int, int] | str] = {}
    seen: dict[tuple, int] = {}

    def reject(row: int, reason: str, detail: str = "") -> None:
        rel = fields[0].strip() if fields else ""
        image = str(path_inside(images_root, rel) or "") if rel else ""
        rejects.append(Reject(source, row, reason, detail, image))

    for row, fields in _rows(csv_path):
        if fields is None:
            rejects.append(Reject(source, row, R_UNPARSABLE, "a field over 128 KiB"))
            continue
        if len(fields) != len(HEADER):
            reject(row, R_COLUMNS, f"{len(fields)} instead of {len(HEADER)}")
            continue
        rel, fx, fy, fw, fh, lms, expr, val, aro = (f.strip() for f in fields)
        try:
            box = (_float(fx), _float(fy), _float(fw), _float(fh))
        except ValueError:
            reject(row, R_BOX_TEXT, f"{fx},{fy},{fw},{fh}")
            continue
        if min(box) < 0 or box[2] == 0 or box[3] == 0:
            reject(row, R_BOX_NEG, f"{fx},{fy},{fw},{fh}")
            continue
        try:
            code = int(expr)
        except ValueError:
            reject(row, R_EXPR_TEXT, repr(expr))
            continue
        if code in AFFECTNET_NON_EXPRESSIONS:
            reject(row, R_NOT_EXPR, f"{code} {AFFECTNET_NON_EXPRESSIONS[code]}")
            continue
        if code == 7 and n_classes == 7:
            reject(row, R_CONTEMPT)
            continue
        if not 0 <= code < n_classes:
            reject(row, R_EXPR_TEXT, f"code {code} outside 0..{n_classes - 1}")
            continue
        try:
            landmarks = parse_landmarks(lms)
        except ValueError as exc:
            reject(row, R_LANDMARKS, str(exc))
            continue
        try:
            valence, arousal = (_float(v) if v else None for v in (val, aro))
        except ValueError:
            reject(row, R_VA, f"{val},{aro}")
            continue
        valence = None if valence is not None and valence <= -2 else valence
        arousal = None if arousal is not None and arousal <= -2 else arousal
        if not rel:
            reject(row, R_MISSING, "empty path")
            continue
        image = path_inside(images_root, rel)
        if image is None:
            reject(row, R_OUTSIDE, rel)
            continue
        key = (rel, box)
        if key in seen:
            reject(row, R_DUPLICATE, f"same image and box as row {seen[key]}")
            continue
        seen[key] = row
        size = None
        if check_images:
            size = sizes.get(image)
            if size is None:
                size = sizes[image] = probe_image(image)
            if isinstance(size, str):
                reject(row, size)
                continue
            box, inside = clipped_box(box, *size)
            if inside < 0.5:
                reject(row, R_BOX_OUT, f"{inside:.0%} inside {size[0]}x{size[1]}")
                continue
            if inside < 1.0:
                fixes.append(Reject(source, row, FIX_CLIPPED, f"{inside:.0%} inside"))
        records.append(FaceRecord(image=image, box=box, expression=code, source=source, row=row,
                                  landmarks=landmarks, valence=valence, arousal=arousal,
                                  face_id=f"r{row:07d}", image_size=size if check_images else None))
    return ReadResult(records, rejects, fixes)


def path_inside(root: Path, rel: str) -> Path | None:
    """`root / rel` if it stays inside `root` once `..` and symbolic links are resolved, else None: a CSV row must
    not make the converter read (and hard-link into the output) /etc/passwd or a file beside the dataset."""
    path = Path(root) / rel
    try:
        resolved, base = path.resolve(), Path(root).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return None
    return path if resolved.is_relative_to(base) else None


def _jpeg_complete(path: Path) -> bool:
    """Whether a JPEG file ends with the end-of-image marker (FF D9), allowing trailing padding; libjpeg only
    warns on a truncated file and fills the missing rows with grey."""
    with open(path, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 4096))
        tail = f.read().rstrip(b"\x00")
    return tail.endswith(b"\xff\xd9")


def probe_image(path: Path) -> tuple[int, int] | str:
    """Image size, or the reject reason when the file is missing, empty, truncated, too large or not an image."""
    try:
        if path.stat().st_size == 0:
            return R_EMPTY
        size = image_size(path)
        if path.suffix.lower() in (".jpg", ".jpeg") and not _jpeg_complete(path):
            return R_TRUNCATED
        return size
    except FileNotFoundError:
        return R_MISSING
    except Image.DecompressionBombError:
        return R_TOO_LARGE
    except (UnidentifiedImageError, OSError, EOFError, SyntaxError, ValueError):
        return R_UNDECODABLE


def reject_summary(result: ReadResult) -> Counter:
    return Counter(r.reason for r in result.rejects)
