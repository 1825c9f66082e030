"""Split- and dataset-level files of each output format, written after the per-image work of the pipeline."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterator

import numpy as np

from .darknet_files import data_file_text, write_names
from .io import atomic_write_bytes, atomic_write_text, output_lock
from .labels import SPLIT_TO_USAGE, canonical_to_fer2013
from .ultralytics_files import write_detection_yaml

SPLIT_ORDER = ("train", "val", "test")
DARKNET_LIST = {"train": "train", "val": "valid", "test": "test"}  # Darknet's .data keys and list names


def _present(folder: Path, pattern: str, names: dict | None = None) -> list[str]:
    """Splits (in train/val/test order) whose file `pattern` exists in `folder`."""
    return [s for s in SPLIT_ORDER if (folder / pattern.format((names or {}).get(s, s))).exists()]


LANDMARK_HEADER = "id,aligned," + ",".join(f"{a}{i}" for i in range(68) for a in "xy")
FLUSH_FACES = 1024  # faces whose landmark lines are formatted together (one C-level format per block)


class StagedFile:
    """A split-level file appended piece by piece as images stream past (so memory does not grow with the split)
    and moved into place by commit(); a file that already holds the same bytes is left untouched. The staging
    name ends in .tmp: an interrupted run's copy is removed by the next (io.remove_leftovers)."""

    def __init__(self, path: Path, mode: str = "w"):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.handle = open(self.tmp, mode)

    def write(self, data) -> None:
        self.handle.write(data)

    def commit(self) -> bool:
        self.handle.close()
        return replace_if_changed(self.tmp, self.path)

    def discard(self) -> None:
        self.handle.close()
        self.tmp.unlink(missing_ok=True)


def replace_if_changed(tmp: Path, path: Path) -> bool:
    """Move `tmp` onto `path`, unless `path` already holds the same bytes (then `tmp` goes): a rerun leaves its
    files untouched."""
    import filecmp
    if path.exists() and filecmp.cmp(tmp, path, shallow=False):
        tmp.unlink()
        return False
    os.replace(tmp, path)
    return True


_LANDMARK_FORMAT = ",".join(["%.2f"] * 136)


def landmark_text(points: np.ndarray | None) -> str:
    """68 x/y (crop pixels) as a landmark CSV holds them: 136 fields, empty where the row had no landmarks. Made in
    the worker processes, per face (one C-level format of the 136 numbers)."""
    if points is None:
        return "," * 135
    return _LANDMARK_FORMAT % tuple(points.reshape(-1).tolist())


def landmark_lines(faces, size: int) -> str:
    """id, aligned flag, then the face's landmark_text at that crop size, one line per face."""
    return "".join(f"{f.face_id},{int(f.aligned)},{f.landmarks[size]}\n" for f in faces)


class SplitFiles:
    """The split-level files of every requested format (landmark CSVs, Darknet and YOLO lists, the table's
    parts), written as the converted images stream past, then the dataset-level files (.data, names, data.yaml)."""

    def __init__(self, layout, split: str, formats, sizes):
        self.layout, self.split, self.formats, self.sizes = layout, split, set(formats), tuple(sizes)
        out, self.pending = layout.out, []
        self.files: dict[str, StagedFile] = {}
        if "crops" in self.formats:
            for s in self.sizes:
                self._open(f"landmarks{s}", out / "crops" / str(s) / f"landmarks_{split}.csv").write(LANDMARK_HEADER + "\n")
        if "darknet" in self.formats:
            for s in self.sizes:
                self._open(f"darknet{s}", out / "darknet" / str(s) / f"{DARKNET_LIST[split]}.list")
        if "table" in self.formats:
            parts = out / "table" / "parts"
            self._open("pixels", parts / f"{split}_pixels.u8", "wb")
            self._open("labels", parts / f"{split}_labels.u8", "wb")
            self._open("ids", parts / f"{split}_ids.txt")
        if "yolo" in self.formats:
            self._open("yolo", out / "yolo" / f"{DARKNET_LIST[split]}.txt")
            self._open("sources", out / "yolo" / f"sources_{split}.csv").write("stem,image\n")

    def _open(self, key: str, path: Path, mode: str = "w") -> StagedFile:
        self.files[key] = StagedFile(path, mode)
        return self.files[key]

    def add(self, stem: str, image: str, faces) -> None:
        """One converted image: its name in the YOLO set, its file, and its faces (pipeline.FaceOut)."""
        if "yolo" in self.formats:
            self.files["yolo"].write(f"{self.layout.yolo(self.split, stem)[0]}\n")
            self.files["sources"].write(f"{stem},{image}\n")
        if "darknet" in self.formats:
            for s in self.sizes:
                self.files[f"darknet{s}"].write("".join(f"{self.layout.darknet(s, self.split, f.expression, f.face_id)}\n"
                                                        for f in faces))
        if "table" in self.formats:
            for f in faces:
                self.files["pixels"].write(np.ascontiguousarray(f.pixels48, np.uint8).tobytes())
            self.files["labels"].write(bytes(f.expression for f in faces))
            self.files["ids"].write("".join(f"{f.face_id}\n" for f in faces))
        if "crops" in self.formats:
            self.pending.extend(faces)
            if len(self.pending) >= FLUSH_FACES:
                self._flush_landmarks()

    def discard(self) -> None:
        """Drop every staged file (an interrupted split leaves the files of its last complete run)."""
        for f in self.files.values():
            f.discard()

    def _flush_landmarks(self) -> None:
        for s in self.sizes:
            self.files[f"landmarks{s}"].write(landmark_lines(self.pending, s))
        self.pending = []

    def close(self) -> None:
        if "crops" in self.formats:
            self._flush_landmarks()
        for key, f in self.files.items():
            if key not in ("pixels", "labels"):
                f.commit()
        if "table" in self.formats:
            self._table_parts()
        if "darknet" in self.formats:
            for s in self.sizes:
                write_darknet_data(self.layout, s)
        if "yolo" in self.formats:
            write_yolo_data(self.layout)

    def _table_parts(self) -> None:
        """The raw pixel and label streams -> <split>_pixels.npy (N, 2304) and <split>_labels.npy, copied in
        blocks through a memory map (a table of AffectNet's 283,901 faces is 650 MB)."""
        parts = self.layout.out / "table" / "parts"
        for key in ("pixels", "labels"):
            self.files[key].handle.close()
        raw_px, raw_y = self.files["pixels"].tmp, self.files["labels"].tmp
        n = raw_y.stat().st_size
        _save_npy(parts / f"{self.split}_labels.npy", np.fromfile(raw_y, np.uint8).astype(np.int64))
        tmp = parts / f".{self.split}_pixels.npy.{os.getpid()}.tmp"
        dst = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(n, TABLE_PIXELS))
        src = np.memmap(raw_px, np.uint8, "r", shape=(n, TABLE_PIXELS)) if n else np.zeros((0, TABLE_PIXELS), np.uint8)
        for i in range(0, n, 65536):
            dst[i:i + 65536] = src[i:i + 65536]
        dst.flush()
        del dst, src
        replace_if_changed(tmp, parts / f"{self.split}_pixels.npy")
        raw_px.unlink()
        raw_y.unlink()


TABLE_PIXELS = 48 * 48


def write_darknet_data(layout, size: int) -> None:
    """labels.txt and emotion-classifier.data over every split converted into the Darknet set so far."""
    root = layout.out / "darknet" / str(size)
    write_names(root / "labels.txt", layout.names)
    entries = {"classes": len(layout.names)}
    for sp in _present(root, "{}.list", DARKNET_LIST):
        key = DARKNET_LIST[sp]
        entries[key] = root / f"{key}.list"
    entries.update(labels=root / "labels.txt", backup=root / "backup", top=2)
    (root / "backup").mkdir(exist_ok=True)  # Darknet trains but saves nothing when it is missing
    atomic_write_text(root / "emotion-classifier.data", data_file_text(entries))


def _save_npy(path: Path, array: np.ndarray) -> bool:
    import io
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return atomic_write_bytes(path, buf.getvalue())


def finalize_table(out: Path, names) -> None:
    """Combined fer2013.csv + fer2013.h5 over every split converted into `out` so far (after all splits:
    rebuilding them per split would rewrite the large CSV each time)."""
    parts = Path(out) / "table" / "parts"
    if parts.is_dir():
        with output_lock(out):
            write_table(Path(out) / "table", load_table_parts(parts), names)


def load_table_parts(parts: Path) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """split -> (pixels (N, 2304) uint8, memory-mapped, canonical labels, ids), for every split converted so far."""
    table = {}
    for split in _present(parts, "{}_labels.npy"):
        table[split] = (np.load(parts / f"{split}_pixels.npy", mmap_mode="r"), np.load(parts / f"{split}_labels.npy"),
                        (parts / f"{split}_ids.txt").read_text().split())
    return table


_PIXEL_TEXT = np.array([str(i) for i in range(256)])
BLOCK = 8192  # table rows formatted or copied at a time: the table itself may not fit in memory


def fer2013_csv_blocks(table, source: str | None = None) -> Iterator[str]:
    """`emotion,pixels,Usage` with FER2013 emotion codes, so the file concatenates with fer2013.csv; in blocks."""
    yield "emotion,pixels,Usage" + (",source" if source else "") + "\n"
    tail = f",{source}" if source else ""
    for split, (pixels, labels, _) in table.items():
        usage = SPLIT_TO_USAGE[split]
        for i in range(0, len(labels), BLOCK):
            text = _PIXEL_TEXT[np.asarray(pixels[i:i + BLOCK])]
            yield "".join(f"{canonical_to_fer2013(c)},{' '.join(t)},{usage}{tail}\n"
                          for t, c in zip(text, labels[i:i + BLOCK]))


def write_h5(path: Path, table, names) -> bool:
    """HDF5 as the reference Torch FER pipeline reads it: `<Usage>_pixel` uint8 (N, 2304), `<Usage>_label`.

    Labels are canonical codes (attribute `label_order`); written to a temp file first and kept only when the
    bytes differ, so a rerun leaves the file untouched. Pixels are copied in blocks (they may be memory-mapped).
    """
    import h5py
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # *.tmp: removed by the next run if we are killed
    try:
        with h5py.File(tmp, "w", track_order=True) as h5:
            h5.attrs["label_order"] = ",".join(names)
            for split, (pixels, labels, ids) in table.items():
                usage = SPLIT_TO_USAGE[split]
                px = h5.create_dataset(f"{usage}_pixel", shape=pixels.shape, dtype=np.uint8, track_times=False)
                for i in range(0, len(pixels), BLOCK):
                    px[i:i + BLOCK] = pixels[i:i + BLOCK]
                h5.create_dataset(f"{usage}_label", data=labels, track_times=False)
                h5.create_dataset(f"{usage}_id", data=np.array(ids, dtype="S"), track_times=False)
        return replace_if_changed(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_table(folder: Path, table, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    csv_file = StagedFile(folder / "fer2013.csv")
    for block in fer2013_csv_blocks(table):
        csv_file.write(block)
    csv_file.commit()
    write_h5(folder / "fer2013.h5", table, names)


def table_names(path: Path) -> tuple[str, ...] | None:
    """The classes a table's labels index (`label_order`, written by write_h5), or None for a table without it."""
    import h5py
    try:
        with h5py.File(path, "r") as h5:
            order = h5.attrs.get("label_order")
    except (FileNotFoundError, OSError):
        return None
    if order is None:
        return None
    return tuple(str(order.decode() if isinstance(order, bytes) else order).split(","))


def write_yolo_data(layout) -> None:
    """emotion.names, emotion.data and data.yaml over every split converted into the YOLO set so far."""
    root = layout.out / "yolo"
    write_names(root / "emotion.names", layout.names)
    present = _present(root, "sources_{}.csv")
    entries = {"classes": len(layout.names)}
    for sp in present:
        entries[DARKNET_LIST[sp]] = root / f"{DARKNET_LIST[sp]}.txt"
    entries.update(names=root / "emotion.names", backup=root / "backup", results=root / "results")
    for folder in ("backup", "results"):  # Darknet exits 0 without saving, or segfaults, when these are missing
        (root / folder).mkdir(exist_ok=True)
    atomic_write_text(root / "emotion.data", data_file_text(entries))
    write_detection_yaml(root / "data.yaml", root, {sp: sp for sp in present}, layout.names)
