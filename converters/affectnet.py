"""Reader for AffectNet annotation CSVs (Mollahosseini et al. 2017).

Columns: subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression,
valence, arousal. Image paths are relative to `Manually_Annotated_Images/`. Landmarks are 68 `x;y` pairs
joined by `;`. Valence/arousal lie in [-1, 1], -2 meaning not applicable.
"""
from __future__ import annotations

import csv
import dataclasses
import functools
import math
import os
from collections import Counter
from dataclasses import dataclass
from typing import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from .io import is_jpeg
from .jpeg_header import HEAD_BYTES, TAIL_BYTES, JpegHeader, file_complete, read_file_header, read_jpeg_header
from .labels import AFFECTNET_NON_EXPRESSIONS
from .records import FaceRecord, Fix, ReadResult, Reject

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


def _lines(csv_path: Path) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line that is not blank (or only separators), NUL bytes removed (csv refuses
    them; that row is then reported). The file is read line by line: AffectNet's training.csv is about 400 MB."""
    try:
        f = open(csv_path, encoding="utf-8-sig", errors="replace", newline=None)  # \n, \r\n and \r all end a line
    except OSError as exc:
        from .errors import EmoDetError
        raise EmoDetError(f"{csv_path}: cannot read ({exc.strerror})") from None
    with f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n").replace("\x00", "")
            if line.replace(",", "").strip():
                yield number, line


def csv_fields(line: str) -> list[str] | None:
    """The fields of one CSV line, or None where csv cannot parse it at all (a field over csv's 128 KiB limit).
    Each physical line is parsed on its own: AffectNet's fields never span lines, and a stray quote must cost one
    row (reported) instead of swallowing the rows after it."""
    try:
        return next(csv.reader([line]), [])
    except csv.Error:
        return None


def _is_header(number: int, first_field: str) -> bool:
    return number == 1 and first_field.strip() == HEADER[0]


def _rows(csv_path: Path):
    """(line number, fields) for every data row (fields None where csv cannot parse the line, reported by the
    caller); tolerates files with or without the header line."""
    for number, line in _lines(csv_path):
        fields = csv_fields(line)
        if fields and _is_header(number, fields[0]):
            continue
        yield number, fields


def _first_field(line: str) -> str:
    """A line's first field, cheaply where it is not quoted (this runs per row in the process feeding the pool)."""
    if line.startswith('"'):
        fields = csv_fields(line)
        return fields[0].strip() if fields else ""
    return line.split(",", 1)[0].strip()


def row_runs(csv_path: Path) -> Iterator[list[tuple[int, str]]]:
    """The data lines of a CSV, (line number, text), in runs that name the same image: what a streamed conversion
    hands its worker processes, which parse and check them there (StreamedRows). Only each line's first field is
    read here."""
    run: list[tuple[int, str]] = []
    key = None
    for number, line in _lines(csv_path):
        first = _first_field(line)
        if _is_header(number, first):
            continue
        if first != key and run:
            yield run
            run = []
        key = first
        run.append((number, line))
    if run:
        yield run


def read_affectnet(csv_path: Path, images_root: Path | None = None, n_classes: int = 7,
                   check_images: bool = True) -> ReadResult:
    """Validate every row of an AffectNet CSV and return the usable faces plus each rejected row with its reason.

    `images_root` defaults to `<csv folder>/Manually_Annotated_Images`. A box that is at least half inside the
    image is clipped (and noted in `fixes`); otherwise the row is rejected.
    """
    result = ReadResult([], [], [])
    for item in iter_affectnet(csv_path, images_root, n_classes, check_images):
        (result.records if isinstance(item, FaceRecord) else
         result.fixes if isinstance(item, Fix) else result.rejects).append(item)
    return result


def box_on_image(box, size: tuple[int, int]) -> tuple[tuple[float, float, float, float] | None, str]:
    """(the box clipped to the image, "" or the clip noted) when at least half of it lies inside; else (None, why)."""
    clipped, inside = clipped_box(box, *size)
    if inside < 0.5:
        return None, f"{inside:.0%} inside {size[0]}x{size[1]}"
    return clipped, f"{inside:.0%} inside" if inside < 1.0 else ""


@dataclass(frozen=True)
class CheckedImage:
    records: list[FaceRecord]  # the rows kept, boxes clipped, with the image's size
    rejects: list[Reject]
    fixes: list[Reject]
    rotated: bool  # EXIF orientation other than as stored
    data: bytes | None  # the file's bytes, read once for the checks and the decoder (None: not read)


WHOLE_FILE = 64 << 20  # bytes; a photo up to this size is read once, for its header and its decoding


def placed_on_image(record: FaceRecord, size: tuple[int, int]) -> tuple[FaceRecord | None, Reject | None]:
    """A row's face on its image of `size`: (the record, box clipped, with the size; and the Fix noting the clip,
    or None), or (None, the Reject) when less than half the box lies inside."""
    box, note = box_on_image(record.box, size)
    if box is None:
        return None, Reject(record.source, record.row, R_BOX_OUT, note, str(record.image))
    fix = Fix(record.source, record.row, FIX_CLIPPED, note) if note else None
    return dataclasses.replace(record, box=box, image_size=size), fix


def small_file_bytes(path, limit: int) -> bytes | None:
    """A file's bytes if it holds 1..`limit` of them, else None (missing, unreadable, empty or too large: the
    full probe decides why). One open, its size from that open: this runs per photo."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        size = os.fstat(fd).st_size
        if not 0 < size <= limit:
            return None
        chunks, left = [], size
        while left > 0 and (chunk := os.read(fd, left)):
            chunks.append(chunk)
            left -= len(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    except OSError:
        return None
    finally:
        os.close(fd)


def checked_on_image(records, image: Path) -> CheckedImage:
    """The image checks of iter_affectnet for the rows of one photo read with check_images=False (a streamed
    split runs them in the conversion's worker processes, beside the decoding, which reuses the bytes read here)."""
    data = None
    probe = None
    if is_jpeg(image):
        data = small_file_bytes(image, WHOLE_FILE)
        header = read_jpeg_header(data[:HEAD_BYTES], data[-TAIL_BYTES:]) if data else None
        if header is not None:
            probe = _from_header(header)
    if probe is None:  # a file our parser leaves to PIL, or an empty or unreadable one: the full probe
        probe = probe_header(image)
    if isinstance(probe, str):
        return CheckedImage([], [Reject(r.source, r.row, probe, "", str(image)) for r in records], [], False, None)
    size, rotated = probe
    kept, rejects, fixes = [], [], []
    for r in records:
        placed, note = placed_on_image(r, size)
        if placed is None:
            rejects.append(note)
        else:
            kept.append(placed)
            if note is not None:
                fixes.append(note)
    return CheckedImage(kept, rejects, fixes, rotated, data)


def images_root_of(csv_path: Path, images_root: Path | None = None) -> Path:
    return Path(images_root) if images_root else Path(csv_path).parent / IMAGES_DIRNAME


class RowChecks:
    """The checks of AffectNet rows that need no image: (line number, fields) -> a FaceRecord (no image size yet)
    or a Reject. Remembers each image's rows for the duplicate check: every image's, or with `adjacent` (the rows
    of each image follow each other) only the current image's, so memory stays flat however long the CSV."""

    def __init__(self, csv_path, images_root: Path | None = None, n_classes: int = 7, adjacent: bool = False):
        self.images_root = images_root_of(csv_path, images_root)
        self.source = str(csv_path)
        self.n_classes, self.adjacent = n_classes, adjacent
        self.seen: dict[tuple, int] = {}
        self.current = None

    def reject(self, row: int, reason: str, detail: str = "", rel: str = "") -> Reject:
        image = str(path_inside(self.images_root, rel) or "") if rel else ""
        return Reject(self.source, row, reason, detail, image)

    def row(self, row: int, fields: list[str] | None) -> FaceRecord | Reject:
        if fields is None:
            return Reject(self.source, row, R_UNPARSABLE, "a field over 128 KiB")
        if len(fields) != len(HEADER):
            return self.reject(row, R_COLUMNS, f"{len(fields)} instead of {len(HEADER)}",
                               fields[0].strip() if fields else "")
        rel, fx, fy, fw, fh, lms, expr, val, aro = (f.strip() for f in fields)
        if self.adjacent and rel != self.current:
            self.current = rel
            self.seen.clear()
        try:
            box = (_float(fx), _float(fy), _float(fw), _float(fh))
        except ValueError:
            return self.reject(row, R_BOX_TEXT, f"{fx},{fy},{fw},{fh}", rel)
        if min(box) < 0 or box[2] == 0 or box[3] == 0:
            return self.reject(row, R_BOX_NEG, f"{fx},{fy},{fw},{fh}", rel)
        try:
            code = int(expr)
        except ValueError:
            return self.reject(row, R_EXPR_TEXT, repr(expr), rel)
        if code in AFFECTNET_NON_EXPRESSIONS:
            return self.reject(row, R_NOT_EXPR, f"{code} {AFFECTNET_NON_EXPRESSIONS[code]}", rel)
        if code == 7 and self.n_classes == 7:
            return self.reject(row, R_CONTEMPT, "", rel)
        if not 0 <= code < self.n_classes:
            return self.reject(row, R_EXPR_TEXT, f"code {code} outside 0..{self.n_classes - 1}", rel)
        try:
            landmarks = parse_landmarks(lms)
        except ValueError as exc:
            return self.reject(row, R_LANDMARKS, str(exc), rel)
        try:
            valence, arousal = (_float(v) if v else None for v in (val, aro))
        except ValueError:
            return self.reject(row, R_VA, f"{val},{aro}", rel)
        valence = None if valence is not None and valence <= -2 else valence
        arousal = None if arousal is not None and arousal <= -2 else arousal
        if not rel:
            return self.reject(row, R_MISSING, "empty path")
        image = path_inside(self.images_root, rel)
        if image is None:
            return self.reject(row, R_OUTSIDE, rel, rel)
        key = (rel, box)
        if key in self.seen:
            return self.reject(row, R_DUPLICATE, f"same image and box as row {self.seen[key]}", rel)
        self.seen[key] = row
        return FaceRecord(image=image, box=box, expression=code, source=self.source, row=row, landmarks=landmarks,
                          valence=valence, arousal=arousal, face_id=f"r{row:07d}")


def iter_affectnet(csv_path: Path, images_root: Path | None = None, n_classes: int = 7, check_images: bool = True,
                   adjacent: bool = False) -> Iterator[FaceRecord | Reject]:
    """read_affectnet as a stream, row by row: a FaceRecord, a Reject or a Fix (a face kept with a fix).

    `adjacent` (the rows of each image follow each other, as scan_affectnet finds in AffectNet's CSVs) lets the
    duplicate check and the image-size cache forget an image once its rows are past, so memory stays flat
    however long the CSV; otherwise both remember every image."""
    checks = RowChecks(csv_path, images_root, n_classes, adjacent)
    sizes: dict[Path, tuple[int, int] | str] = {}
    for number, fields in _rows(Path(csv_path)):
        item = checks.row(number, fields)
        if not check_images or not isinstance(item, FaceRecord):
            yield item
            continue
        if adjacent and item.image not in sizes:
            sizes.clear()
        size = sizes.get(item.image)
        if size is None:
            size = sizes[item.image] = probe_image(item.image)
        if isinstance(size, str):
            yield Reject(item.source, number, size, "", str(item.image))
            continue
        placed, note = placed_on_image(item, size)
        if note is not None:
            yield note
        if placed is not None:
            yield placed


@dataclass(frozen=True)
class StreamedRows:
    """Parses and checks one image's run of raw CSV lines (row_runs) in a worker process of a streamed conversion:
    the process feeding the pool then only reads lines, so the rows' Python is spread over every core."""
    csv_path: str
    images_root: str
    n_classes: int

    def __call__(self, run: list[tuple[int, str]]) -> list[FaceRecord | Reject]:
        checks = RowChecks(self.csv_path, Path(self.images_root), self.n_classes, adjacent=True)
        return [checks.row(number, csv_fields(line)) for number, line in run]


@dataclass(frozen=True)
class CsvScan:
    """What one cheap pass over an AffectNet CSV tells before converting it: the digest of everything the
    outputs depend on (the CSV's bytes, each image's size and mtime, in row order), the number of distinct
    images (for progress), and whether each image's rows follow each other (what streaming needs)."""
    digest: str
    images: int
    adjacent: bool


def scan_affectnet(csv_path: Path, images_root: Path | None = None) -> CsvScan:
    """One pass over the CSV: no image is opened, each is stat-ed once. Remembers one hash per image (to find
    an image whose rows are apart), about 60 bytes a photo."""
    import hashlib
    csv_path = Path(csv_path)
    images_root = images_root_of(csv_path, images_root)
    h = hashlib.sha1()
    with open(csv_path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    met: set[int] = set()
    current, adjacent = None, True
    root = os.fspath(images_root)
    for number, line in _lines(csv_path):
        rel = _first_field(line)  # strings and os.stat: this runs per row, before the conversion starts
        if rel == current or _is_header(number, rel):
            continue
        current = rel
        key = hash(rel)
        adjacent = adjacent and key not in met
        met.add(key)
        try:
            st = os.stat(os.path.join(root, rel))
            h.update(f"{rel}|{st.st_size}:{st.st_mtime_ns}\n".encode())
        except (OSError, ValueError):
            h.update(f"{rel}|missing\n".encode())
    return CsvScan(h.hexdigest(), len(met), adjacent)


def path_inside(root: Path, rel: str) -> Path | None:
    """`root / rel` if it stays inside `root` once `..` and symbolic links are resolved, else None: a CSV row must
    not make the converter read (and hard-link into the output) /etc/passwd or a file beside the dataset."""
    # strings, not Paths: this runs once per CSV row (420,000 for AffectNet), in the process that feeds the pool
    joined = os.path.join(os.fspath(root), rel)
    folder, name = os.path.split(joined)
    try:
        if name in ("", ".", "..") or os.path.islink(joined):
            resolved = os.path.realpath(joined)
        else:  # folders are resolved once each: AffectNet's 420,000 photos sit in about 1,000 of them
            resolved = os.path.join(_resolved(folder), name)
        base = _resolved(os.fspath(root))
    except (OSError, RuntimeError):  # a symlink loop
        return None
    inside = resolved == base or resolved.startswith(base if base.endswith(os.sep) else base + os.sep)
    return Path(joined) if inside else None


@functools.lru_cache(maxsize=4096)
def _resolved(folder: str) -> str:
    return os.path.realpath(folder)


def probe_image(path: Path) -> tuple[int, int] | str:
    """Image size, or the reject reason when the file is missing, empty, truncated, too large or not an image."""
    probe = probe_header(path)
    return probe if isinstance(probe, str) else probe[0]


def probe_header(path: Path) -> tuple[tuple[int, int], bool] | str:
    """((width, height), EXIF-rotated?) of an image, or the reject reason (probe_image). JPEGs are read by our
    header parser (one read, no image object), anything it does not understand by PIL."""
    try:
        if path.stat().st_size == 0:
            return R_EMPTY
        if is_jpeg(path):
            header = read_file_header(path)
            if header is not None:
                return _from_header(header)
        with Image.open(path) as im:
            size, rotated = im.size, _exif_rotated(im)
        if is_jpeg(path) and not file_complete(path):
            return R_TRUNCATED
        return size, rotated
    except FileNotFoundError:
        return R_MISSING
    except Image.DecompressionBombError:
        return R_TOO_LARGE
    except (UnidentifiedImageError, OSError, EOFError, SyntaxError, ValueError, ImportError):
        # ImportError: PIL recognised a format whose optional plugin (e.g. HEIF) is not installed
        return R_UNDECODABLE


def _from_header(header: JpegHeader) -> tuple[tuple[int, int], bool] | str:
    """probe_header's answer from a parsed JPEG header."""
    if not header.complete:
        return R_TRUNCATED
    if header.width * header.height > 2 * Image.MAX_IMAGE_PIXELS:  # where PIL refuses to decode
        return R_TOO_LARGE
    return (header.width, header.height), header.orientation not in (0, 1)


def _exif_rotated(im) -> bool:
    try:
        return im.getexif().get(0x0112, 1) not in (0, 1)
    except Exception:  # unreadable EXIF: the pixels as stored
        return False


def reject_summary(result: ReadResult) -> Counter:
    return Counter(r.reason for r in result.rejects)
