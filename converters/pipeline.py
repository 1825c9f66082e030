"""One record stream -> every output format. Readers produce FaceRecords; this module groups them by image,
crops each image once in a process pool, and hands the results to the writers of each format. A split comes as
a list, or (AffectNet at scale) as a RecordStream read row by row: then nothing is kept per row, the rows are parsed
and the photos checked in the pool, and the split files are appended as images stream past (writers.SplitFiles).

Layout under OUT (one writer each):
  crops/<size>/<split>/<class>/<id>.png            Ultralytics classification layout (+ landmarks_<split>.csv)
  darknet/<size>/<split>/<id>_<class>.png          Darknet classifier: class only in the file name (+ lists, .data)
  table/fer2013.csv, table/fer2013.h5              FER2013-style table (48 px grey), merged with FER2013
  yolo/<split>/<stem>.jpg + <stem>.txt             YOLO/Darknet detection set (+ lists, emotion.data, data.yaml)
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import shutil
import time
import zlib
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import cv2
import numpy as np

from . import crops as geo
from . import jpeg_region
from .affectnet import WHOLE_FILE, checked_on_image, probe_header, small_file_bytes
from .darknet_files import check_classifier_path, check_detector_image_path
from .errors import EmoDetError
from .io import atomic_write_bytes, is_jpeg, output_lock, remove_leftovers
from .parallel import parallel_map
from .labels import class_names
from .records import FaceRecord, Reject
from .writers import landmark_text
from .yolo_format import yolo_line
from .progress import tracked

FORMATS = ("crops", "darknet", "table", "yolo")
TABLE_SIZE = 48  # FER2013 faces are 48x48
FS_BLOCK = 4096  # bytes a file takes on disk at least (ext4, xfs, overlayfs over them)
R_DECODE = "image undecodable"
MAX_CROP = 1024  # px; a face crop larger than this is a typo (--sizes 100000 would allocate gigabytes per face)


@dataclass(frozen=True)
class ConvertOptions:
    sizes: tuple[int, ...] = (48, 96)
    n_classes: int = 7
    color: str = "gray"  # gray | rgb
    box_scale: float = 1.0
    align: bool = False
    formats: tuple[str, ...] = FORMATS
    workers: int = max(1, os.cpu_count() or 1)
    progress: bool = True
    names: tuple[str, ...] | None = None  # a dataset's own classes (labels.custom_names); None: canonical table

    @property
    def label_names(self) -> tuple[str, ...]:
        """The classes every output is labelled with: the dataset's own, else the canonical 7 or 8."""
        return self.names or class_names(self.n_classes)

    def __post_init__(self):
        if self.color not in ("gray", "rgb"):
            raise EmoDetError(f"color must be gray or rgb, not {self.color!r}")
        unknown = set(self.formats) - set(FORMATS)
        if unknown:
            raise EmoDetError(f"unknown format(s) {sorted(unknown)}; choose from {', '.join(FORMATS)}")
        if not self.sizes or min(self.sizes) < 8 or max(self.sizes) > MAX_CROP:
            raise EmoDetError(f"crop sizes must lie in 8..{MAX_CROP} px, got {self.sizes}")
        if not (math.isfinite(self.box_scale) and 0 < self.box_scale <= 10):
            raise EmoDetError(f"box scale must be a number in (0, 10], got {self.box_scale}")

    def signature(self) -> dict:
        """The options that change output bytes (a rerun with other values must not reuse files)."""
        d = asdict(self)
        for k in ("workers", "progress", "formats"):
            d.pop(k)
        return json.loads(json.dumps(d))  # as stored in the manifest (tuples become lists)


@dataclass(frozen=True)
class ImageTask:
    image: Path
    image_size: tuple[int, int] | None  # (width, height); None: not checked yet (a streamed split)
    records: tuple[FaceRecord, ...]
    split: str
    stem: str  # file stem of the image in the YOLO set
    rotated: bool | None = None  # EXIF orientation other than as stored; None: not read yet


@dataclass(slots=True)
class FaceOut:
    face_id: str
    expression: int
    pixels48: np.ndarray | None  # for the table writer
    landmarks: dict[int, str]  # per crop size, in crop coordinates, as the landmark CSVs hold them
    aligned: bool


@dataclass(slots=True)
class GroupOut:
    faces: list[FaceOut] = field(default_factory=list)
    written: int = 0
    rejects: list[Reject] = field(default_factory=list)  # rows whose photo or box failed the checks made here
    fixes: list[Reject] = field(default_factory=list)
    # a streamed image's (see converted_run): its name in the YOLO set and its file; whether it is left out
    stem: str = ""
    image: str = ""
    left_out: bool = False


class Layout:
    """Every output path, in one place."""

    def __init__(self, out: Path, options: ConvertOptions):
        self.out = Path(out).resolve()
        self.root = str(self.out)  # paths are built from one string each: this runs per face, per format
        self.names = options.label_names
        self.fresh = False  # no file of this split exists yet: nothing to look for before writing

    # Strings, not Paths: these run per face and per format (a Path costs more to build than the file it names)
    def crop(self, size: int, split: str, expression: int, face_id: str) -> str:
        return f"{self.root}/crops/{size}/{split}/{self.names[expression]}/{face_id}.png"

    def darknet(self, size: int, split: str, expression: int, face_id: str) -> str:
        return f"{self.root}/darknet/{size}/{split}/{face_id}_{self.names[expression]}.png"

    def yolo(self, split: str, stem: str) -> tuple[str, str]:
        return f"{self.root}/yolo/{split}/{stem}.jpg", f"{self.root}/yolo/{split}/{stem}.txt"


def _decode(task: ImageTask, factor: int, color: str, data: bytes | None = None,
            region: tuple[int, int, int, int] | None = None, shape: tuple[int, int] | None = None) -> np.ndarray | None:
    """The image at 1/`factor` (JPEG DCT scaling), grey or colour; from `data` when the file was read already.
    Given the `region` (x1, y1, x2, y2 at that scale) that every crop lies in and the `shape` the header predicts,
    a grey JPEG is decoded there only (jpeg_region: same pixels there, zeros elsewhere)."""
    grey = color == "gray"
    if task.records[0].pixels is not None:
        px = task.records[0].pixels
        return px if (px.ndim == 2) == grey else (cv2.cvtColor(px, cv2.COLOR_GRAY2BGR) if px.ndim == 2
                                                   else cv2.cvtColor(px, cv2.COLOR_BGR2GRAY))
    if grey and region is not None and is_jpeg(task.image):
        if data is None:
            data = small_file_bytes(task.image, WHOLE_FILE)
        part = jpeg_region.region_grey(data, factor, shape, region) if data else None
        if part is not None:
            return part
    # Boxes are in the stored pixel grid (what the header reports), so EXIF rotation must not be applied.
    flags = geo.reduced_flag(factor, grey) | cv2.IMREAD_IGNORE_ORIENTATION
    if data is not None:
        return cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    return cv2.imread(str(task.image), flags)


def _exif_rotated(path: Path) -> bool:
    """Whether a JPEG carries an EXIF orientation other than 'as stored'. Our boxes are in the stored pixel grid,
    but Ultralytics and OpenCV load such a file rotated, so its YOLO copy is re-encoded without the tag (pixels as
    stored) instead of hard-linked. Unreadable EXIF: the decoder decides later."""
    probe = probe_header(path)
    return not isinstance(probe, str) and probe[1]


def stored(crop: np.ndarray) -> bool:
    """Whether a crop is stored uncompressed: where its raw pixels fit one filesystem block anyway (a 48 px grey
    crop: 2.4 KB against 1.5 KB deflated, one block either way, and a quarter of the time to encode). Fixed per crop
    size, so reruns stay byte-identical."""
    return crop.size + 256 <= FS_BLOCK


def png_bytes(crop: np.ndarray) -> bytes:
    """A crop as PNG: grey ones that are stored, written here (a stored PNG is its rows in zlib's stored blocks:
    7 against 25 us through OpenCV, whose setup costs more than the encoding); the others by OpenCV, fast deflate."""
    if crop.ndim == 2 and stored(crop):
        return _stored_grey_png(crop)
    ok, buf = cv2.imencode(".png", crop, [cv2.IMWRITE_PNG_COMPRESSION, 0 if stored(crop) else 1])
    if not ok:
        raise EmoDetError("PNG encoding failed")
    return buf.tobytes()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")


def _stored_grey_png(grey: np.ndarray) -> bytes:
    """8-bit greyscale PNG, rows unfiltered (filter byte 0), in zlib stored blocks (level 0)."""
    h, w = grey.shape
    rows = np.zeros((h, w + 1), np.uint8)
    rows[:, 1:] = grey
    header = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes((8, 0, 0, 0, 0))  # depth 8, grey, no interlace
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header) + _png_chunk(b"IDAT", zlib.compress(rows.tobytes(), 0))
            + _png_chunk(b"IEND", b""))


def _crops_region(boxes, factor: int, shape) -> tuple[int, int, int, int]:
    """The smallest (x1, y1, x2, y2) of an image decoded at 1/`factor` that holds every box crop (box_crop)."""
    x1, y1, x2, y2 = zip(*(geo.pixel_box(b, factor, shape) for b in boxes))
    return min(x1), min(y1), max(x2), max(y2)


def _link_or_write(src: Path | None, data: bytes | None, dst: str, known_missing: bool = False) -> None:
    """Hard-link `src` to `dst` (same filesystem), else copy it; or write `data`. Atomic either way: a link
    appears whole, so a `dst` known to be missing is linked directly."""
    if src is None:
        atomic_write_bytes(dst, data)
        return
    folder, name = os.path.split(dst)
    if known_missing:
        try:
            os.link(src, dst)
            return
        except FileNotFoundError:  # its folder is new
            os.makedirs(folder, exist_ok=True)
        except OSError:  # another filesystem, or there after all: through a temporary file below
            pass
        try:
            os.link(src, dst)
            return
        except OSError:
            pass
    os.makedirs(folder, exist_ok=True)
    tmp = f"{folder}/.{name}.{os.getpid()}.tmp"
    if os.path.lexists(tmp):
        os.unlink(tmp)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)
    # rename() between two links of one file does nothing (POSIX), leaving tmp behind when dst already links src
    if os.path.lexists(tmp):
        os.unlink(tmp)


def convert_group(task: ImageTask, layout: Layout, options: ConvertOptions) -> GroupOut:
    """Write every requested output for the faces of one image; the unit of work of the process pool."""
    out = GroupOut()
    if task.image_size is None:  # a streamed AffectNet split: its photo is checked here, in the pool
        checked = checked_on_image(task.records, task.image)
        out.rejects, out.fixes, data = checked.rejects, checked.fixes, checked.data
        if not checked.records:
            return out
        task = dataclasses.replace(task, records=tuple(checked.records), image_size=checked.records[0].image_size,
                                   rotated=checked.rotated)
    else:
        data = None
    fmt = set(options.formats)
    width, height = task.image_size
    boxes = [geo.scaled_box(r.box, options.box_scale, width, height) for r in task.records]
    need = max(max(options.sizes), TABLE_SIZE if "table" in fmt else 0)
    factor = 1 if task.records[0].pixels is not None or not is_jpeg(task.image) else geo.decode_factor(boxes, need)
    shape = geo.decoded_shape(width, height, factor)
    sizes = sorted(set(options.sizes) | ({TABLE_SIZE} if "table" in fmt else set()))

    wanted: list[Path] = []
    for r in task.records:
        for s in options.sizes:
            if "crops" in fmt:
                wanted.append(layout.crop(s, task.split, r.expression, r.face_id))
            if "darknet" in fmt:
                wanted.append(layout.darknet(s, task.split, r.expression, r.face_id))
    if "yolo" in fmt:
        wanted.extend(layout.yolo(task.split, task.stem))
    missing = set(wanted) if layout.fresh else {p for p in wanted if not os.path.exists(p)}
    reusable48 = "crops" in fmt and TABLE_SIZE in options.sizes
    image = None
    if missing or ("table" in fmt and not reusable48):
        aligned = options.align and any(r.landmarks is not None for r in task.records)
        image = _decode(task, factor, options.color, data, None if aligned else _crops_region(boxes, factor, shape),
                        shape)
        if image is None or image.size == 0:  # every row of the photo is rejected, each once
            out.rejects += [Reject(r.source, r.row, R_DECODE, "", str(task.image)) for r in task.records]
            return out

    for r, box in zip(task.records, boxes):
        use_align = options.align and r.landmarks is not None
        face = FaceOut(r.face_id, r.expression, None, {}, use_align)
        for s in sizes:
            crop_file = layout.crop(s, task.split, r.expression, r.face_id) if "crops" in fmt else None
            dark_file = layout.darknet(s, task.split, r.expression, r.face_id) if "darknet" in fmt else None
            if use_align:
                m = geo.alignment_matrix(r.landmarks, s)
            else:
                m = geo.box_matrix(box, factor, shape, s)
            face.landmarks[s] = landmark_text(None if r.landmarks is None else geo.transform_points(m, r.landmarks))
            on_disk = [p for p in (crop_file, dark_file) if p is not None and s in options.sizes]
            if image is None:  # every file exists: reuse the written 48 px crop for the table
                if s == TABLE_SIZE and "table" in fmt:
                    face.pixels48 = geo.table_pixels(cv2.imread(crop_file, cv2.IMREAD_UNCHANGED))
                continue
            crop = (geo.aligned_crop(image, r.landmarks, factor, s)[0] if use_align
                    else geo.box_crop(image, box, factor, shape, s))
            if s == TABLE_SIZE and "table" in fmt:
                face.pixels48 = geo.table_pixels(crop)
            if not any(p in missing for p in on_disk):
                continue
            data = png_bytes(crop)
            if crop_file is not None and s in options.sizes and crop_file in missing:
                atomic_write_bytes(crop_file, data, known_missing=True)
                out.written += 1
            if dark_file is not None and s in options.sizes and dark_file in missing:
                check_classifier_path(dark_file, layout.names[r.expression], layout.names)
                _link_or_write(crop_file, None if crop_file else data, dark_file)
                out.written += 1
        out.faces.append(face)

    if "yolo" in fmt:
        img_dst, txt_dst = layout.yolo(task.split, task.stem)
        check_detector_image_path(img_dst)
        if img_dst in missing:
            rotated = task.rotated if task.rotated is not None else _exif_rotated(task.image)
            if task.records[0].pixels is not None or not is_jpeg(task.image) or rotated:
                full = task.records[0].pixels if task.records[0].pixels is not None else cv2.imread(
                    str(task.image), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
                ok, buf = cv2.imencode(".jpg", full, [cv2.IMWRITE_JPEG_QUALITY, 95])
                _link_or_write(None, buf.tobytes(), img_dst)
            else:
                _link_or_write(task.image, None, img_dst, known_missing=True)
            out.written += 1
        if txt_dst in missing:
            lines = [yolo_line(r.expression, b, width, height) for r, b in zip(task.records, boxes)]
            atomic_write_bytes(txt_dst, ("\n".join(lines) + "\n").encode(), known_missing=True)
            out.written += 1
    return out


def _run_task(args):
    task, layout, options = args
    return convert_group(task, layout, options)


def converted_run(items: list, split: str, layout: Layout, options: ConvertOptions) -> GroupOut:
    """convert_group for one image's rows of a streamed split, parsed and checked (RecordStream.parse) in the
    worker: every rejected row of the image comes back with the result, in row order, and the image is marked
    left out when none of its rows made a face."""
    records = [i for i in items if isinstance(i, FaceRecord)]
    rejects = [i for i in items if not isinstance(i, FaceRecord)]
    if not records:
        return GroupOut(rejects=rejects, left_out=any(j.image for j in rejects))
    task = _task(records, split)
    out = convert_group(task, layout, options)
    out.rejects = sorted(rejects + out.rejects, key=lambda j: j.row) if rejects else out.rejects
    out.stem, out.image, out.left_out = task.stem, str(task.image), not out.faces
    return out


def _run_raw(args):
    run, parse, split, layout, options = args
    return converted_run(parse(run), split, layout, options)


def _group_key(r: FaceRecord):
    return (r.image, r.row) if r.pixels is not None else r.image


def _task(recs: list[FaceRecord], split: str) -> ImageTask:
    first = recs[0]
    size = (first.pixels.shape[1], first.pixels.shape[0]) if first.pixels is not None else first.image_size
    return ImageTask(first.image, tuple(size) if size else None, tuple(recs), split,
                     first.image_id or f"i{first.row:07d}")


def image_tasks(records: list[FaceRecord], split: str) -> list[ImageTask]:
    """Group records by image (first-appearance order); each image is decoded once for all its faces."""
    groups: dict = defaultdict(list)
    for r in records:
        groups[_group_key(r)].append(r)
    return [_task(recs, split) for recs in groups.values()]


@dataclass
class SplitReport:
    split: str
    images: int
    faces: int
    per_class: dict[str, int]
    rejects: Counter
    images_without_faces: int
    written: int
    seconds: float
    fixes: list[Reject] = field(default_factory=list)  # faces kept with a fix (streamed splits; lists: the reader's)

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("inf")


MANIFEST = ".emodet-convert.json"


def _file_stamp(path: Path) -> str:
    """Size and modification time of a file (cheap at AffectNet's 420,000 images, unlike hashing them)."""
    try:
        st = os.stat(path)
    except OSError:
        return "missing"
    return f"{st.st_size}:{st.st_mtime_ns}"


def records_digest(records: list[FaceRecord]) -> str:
    """What a split's outputs depend on: each face's image (path, size and mtime), row, box, label and landmarks,
    in order. Output files are named after CSV rows, so a changed CSV, a replaced image or moved landmarks
    converted into the same folder must not reuse the old files."""
    h = hashlib.sha1()
    stamps: dict[Path, str] = {}
    for r in records:
        stamp = stamps.get(r.image) or stamps.setdefault(r.image, _file_stamp(r.image))
        marks = "" if r.landmarks is None else hashlib.sha1(np.ascontiguousarray(r.landmarks).tobytes()).hexdigest()
        h.update(f"{r.image}|{stamp}|{r.row}|{r.box}|{r.expression}|{marks}\n".encode())
    return h.hexdigest()


def _check_manifest(out: Path, split: str, signature: dict, overwrite: bool) -> None:
    """Refuse to mix files written with other options or from other records into one set (reruns reuse
    existing files)."""
    path = out / MANIFEST
    manifest = json.loads(path.read_text()) if path.exists() else {}
    old = manifest.get(split)
    if old is not None and old != signature:
        if not overwrite:
            changed = sorted(k for k in set(old) | set(signature) if old.get(k) != signature.get(k))
            raise EmoDetError(f"{out}: split {split!r} was converted with other options or input "
                              f"({', '.join(changed)}); use another output folder or --overwrite")
        for pattern in (f"crops/*/{split}", f"darknet/*/{split}", f"yolo/{split}"):
            for d in out.glob(pattern):
                shutil.rmtree(d)
    manifest[split] = signature
    atomic_write_bytes(path, json.dumps(manifest, indent=1, sort_keys=True).encode())


@dataclass
class RecordStream:
    """A split read as it converts: each image's run of raw rows (`runs`, in file order), which `parse` (a
    picklable callable: run -> FaceRecords and Rejects) turns into records in the worker processes, with what a
    cheap pre-pass knows: the digest of everything the outputs depend on, and the image count. The process
    feeding the pool only reads lines; parsing them there took a third of a core at AffectNet's scale."""
    runs: Iterable
    parse: Callable
    digest: str
    images: int | None = None


STREAM_BATCH = 32  # images a job of a streamed split: as many as a listed split's largest (parallel.parallel_map)
KEPT_REJECTS = 1000  # rejected rows a streamed split keeps in memory; every one is in rejects_<split>.csv


def convert_split(records: list[FaceRecord] | RecordStream, split: str, out: Path, options: ConvertOptions,
                  rejects: list[Reject] = (), overwrite: bool = False, digest: str | None = None
                  ) -> tuple[SplitReport, list[Reject]]:
    """Write all requested formats for one split; returns the report and the rejected rows (reader's + ours;
    a RecordStream: the first KEPT_REJECTS, all of them counted in the report and listed in
    OUT/rejects_<split>.csv). Holds the output folder's lock throughout, and first removes what an interrupted
    run left behind. `digest` stands for records_digest(records) where a reader has a cheaper one."""
    with output_lock(out):
        remove_leftovers(out)
        return _convert_split(records, split, Path(out), options, rejects, overwrite, digest)


class _Tally:
    """What a split's report counts, taken as rows and images stream past (nothing kept per face); every
    rejected row goes to its staged rejects file as it comes."""

    def __init__(self, rejects_file, keep: int | None):
        import csv
        self.rejects: list[Reject] = []
        self.fixes: list[Reject] = []
        self.reasons: Counter = Counter()
        self.keep = keep
        self.file = rejects_file  # a writers.StagedFile
        self.rows = csv.writer(rejects_file.handle, lineterminator="\n")
        self.rows.writerow(("source", "row", "reason", "detail", "image"))
        self.images = self.faces = self.dropped = self.written = 0
        self.per_class: Counter = Counter()

    def reject(self, j: Reject) -> None:
        self.reasons[j.reason] += 1
        if self.keep is None or len(self.rejects) < self.keep:
            self.rejects.append(j)
        self.rows.writerow((j.source, j.row, j.reason, j.detail, j.image))


def _convert_split(records, split, out, options, rejects, overwrite, digest):
    from .writers import SplitFiles, StagedFile
    t0 = time.perf_counter()
    streamed = isinstance(records, RecordStream)
    digest = records.digest if streamed else digest or records_digest(records)
    _check_manifest(out, split, options.signature() | {"records": digest}, overwrite)
    layout = Layout(out, options)
    layout.fresh = not any(next(out.glob(pattern), None) for pattern in (f"crops/*/{split}", f"darknet/*/{split}",
                                                                          f"yolo/{split}"))
    tally = _Tally(StagedFile(out / f"rejects_{split}.csv"), KEPT_REJECTS if streamed else None)
    files = SplitFiles(layout, split, options.formats, options.sizes)
    try:
        if streamed:
            _convert_runs(records, layout, options, tally, files)
        else:
            for j in rejects:
                tally.reject(j)
            _convert_tasks(image_tasks(records, split), layout, options, tally, files, rejects)
        files.close()
        tally.file.commit()
    except BaseException:
        files.discard()
        tally.file.discard()
        raise
    report = SplitReport(split, tally.images, tally.faces, {n: tally.per_class.get(i, 0) for i, n in enumerate(layout.names)},
                         tally.reasons, tally.dropped, tally.written, time.perf_counter() - t0, tally.fixes)
    return report, tally.rejects


def _count(tally: _Tally, files, res: GroupOut, stem: str, image: str) -> None:
    """One image's result into the split's counts and files (`res.faces` empty: no file gets a line)."""
    tally.written += res.written
    for j in res.rejects:
        tally.reject(j)
    tally.fixes.extend(res.fixes)
    if res.faces:
        tally.images += 1
        tally.faces += len(res.faces)
        tally.per_class.update(f.expression for f in res.faces)
        files.add(stem, image, res.faces)


def _convert_runs(stream: RecordStream, layout: Layout, options: ConvertOptions, tally: _Tally, files) -> None:
    """Convert a streamed split: each image's raw rows go to the pool, which parses, checks and converts them."""
    jobs = ((run, stream.parse, files.split, layout, options) for run in stream.runs)
    # images go to the pool STREAM_BATCH at a time: one pipe message per batch, however many images
    for res in tracked(parallel_map(_run_raw, jobs, options.workers, STREAM_BATCH), total=stream.images,
                       desc=f"convert {files.split}", unit="img", disable=not options.progress):
        _count(tally, files, res, res.stem, res.image)
        tally.dropped += res.left_out


def _convert_tasks(tasks: list[ImageTask], layout, options, tally, files, rejects) -> None:
    """Convert every image of a listed split in the pool. Left-out images are counted over the whole list (its
    rows of one image may lie apart)."""
    workers = options.workers if len(tasks) > 1 else 1
    rejected_images = {j.image for j in rejects if j.image}
    kept_images = set()
    jobs = [(t, layout, options) for t in tasks]
    for task, res in tracked(zip(tasks, parallel_map(_run_task, jobs, workers)), total=len(tasks),
                             desc=f"convert {files.split}", unit="img", disable=not options.progress):
        _count(tally, files, res, task.stem, str(task.image))
        (kept_images if res.faces else rejected_images).add(str(task.image))
    tally.dropped = len(rejected_images - kept_images)


def summary_text(report: SplitReport, options: ConvertOptions) -> str:
    """The one-screen closing summary of a split."""
    lines = [f"split {report.split}: {report.faces} faces from {report.images} images in {report.seconds:.1f} s "
             f"({report.images_per_second:.0f} images/s), {report.written} files written"]
    fmts = ", ".join(options.formats)
    lines.append(f"  per class (each of: {fmts}; sizes {' '.join(map(str, options.sizes))}):")
    lines.append("    " + "  ".join(f"{k} {v}" for k, v in report.per_class.items()))
    if report.rejects:
        lines.append(f"  rows skipped: {sum(report.rejects.values())}")
        lines.extend(f"    {n:6d}  {reason}" for reason, n in report.rejects.most_common())
    if report.images_without_faces:
        lines.append(f"  images left out (no valid face): {report.images_without_faces}")
    return "\n".join(lines)
