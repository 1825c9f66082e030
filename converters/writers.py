"""Split- and dataset-level files of each output format, written after the per-image work of the pipeline."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .darknet_files import data_file_text, write_list, write_names
from .io import atomic_write_bytes, atomic_write_text, output_lock
from .labels import SPLIT_TO_USAGE, canonical_to_fer2013
from .ultralytics_files import write_detection_yaml

SPLIT_ORDER = ("train", "val", "test")
DARKNET_LIST = {"train": "train", "val": "valid", "test": "test"}  # Darknet's .data keys and list names


def _present(folder: Path, pattern: str, names: dict | None = None) -> list[str]:
    """Splits (in train/val/test order) whose file `pattern` exists in `folder`."""
    return [s for s in SPLIT_ORDER if (folder / pattern.format((names or {}).get(s, s))).exists()]


def write_landmarks_csv(path: Path, faces, size: int) -> bool:
    """id, aligned flag, then 68 x/y in crop pixels (empty when the row had no landmarks)."""
    import io
    header = "id,aligned," + ",".join(f"{a}{i}" for i in range(68) for a in "xy")
    empty = "," * 135
    coords = [f.landmarks.get(size) for f in faces]
    have = [c is not None for c in coords]
    buf = io.StringIO()
    if any(have):  # one C-level format per row instead of 136 Python formats
        np.savetxt(buf, np.stack([c.reshape(-1) for c in coords if c is not None]), fmt="%.2f", delimiter=",")
    formatted = iter(buf.getvalue().splitlines())
    lines = [header] + [f"{f.face_id},{int(f.aligned)},{next(formatted) if h else empty}" for f, h in zip(faces, have)]
    return atomic_write_text(path, "\n".join(lines) + "\n")


def write_crops_split(layout, split: str, faces, sizes) -> None:
    for s in sizes:
        write_landmarks_csv(layout.out / "crops" / str(s) / f"landmarks_{split}.csv", faces, s)


def write_darknet_split(layout, split: str, faces, sizes) -> None:
    for s in sizes:
        root = layout.out / "darknet" / str(s)
        paths = [layout.darknet(s, split, f.expression, f.face_id) for f in faces]
        write_list(root / f"{DARKNET_LIST[split]}.list", paths)
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


def write_table_split(layout, split: str, faces) -> None:
    parts = layout.out / "table" / "parts"
    pixels = np.stack([f.pixels48 for f in faces]) if faces else np.zeros((0, 2304), np.uint8)
    _save_npy(parts / f"{split}_pixels.npy", pixels.astype(np.uint8))
    _save_npy(parts / f"{split}_labels.npy", np.array([f.expression for f in faces], dtype=np.int64))
    atomic_write_text(parts / f"{split}_ids.txt", "".join(f"{f.face_id}\n" for f in faces))


def finalize_table(out: Path, names) -> None:
    """Combined fer2013.csv + fer2013.h5 over every split converted into `out` so far (after all splits:
    rebuilding them per split would rewrite the large CSV each time)."""
    parts = Path(out) / "table" / "parts"
    if parts.is_dir():
        with output_lock(out):
            write_table(Path(out) / "table", load_table_parts(parts), names)


def load_table_parts(parts: Path) -> dict[str, tuple[np.ndarray, np.ndarray, list[str]]]:
    """split -> (pixels (N, 2304) uint8, canonical labels, ids), for every split converted so far."""
    table = {}
    for split in _present(parts, "{}_labels.npy"):
        table[split] = (np.load(parts / f"{split}_pixels.npy"), np.load(parts / f"{split}_labels.npy"),
                        (parts / f"{split}_ids.txt").read_text().split())
    return table


_PIXEL_TEXT = np.array([str(i) for i in range(256)])


def fer2013_csv_text(table, source: str | None = None) -> str:
    """`emotion,pixels,Usage` with FER2013 emotion codes, so the file concatenates with fer2013.csv."""
    header = "emotion,pixels,Usage" + (",source" if source else "")
    lines = [header]
    tail = f",{source}" if source else ""
    for split, (pixels, labels, _) in table.items():
        usage = SPLIT_TO_USAGE[split]
        text = _PIXEL_TEXT[pixels]
        lines.extend(f"{canonical_to_fer2013(c)},{' '.join(t)},{usage}{tail}" for t, c in zip(text, labels))
    return "\n".join(lines) + "\n"


def write_h5(path: Path, table, names) -> bool:
    """HDF5 as the reference Torch FER pipeline reads it: `<Usage>_pixel` uint8 (N, 2304), `<Usage>_label`.

    Labels are canonical codes (attribute `label_order`); written to a temp file first and kept only when the
    bytes differ, so a rerun leaves the file untouched.
    """
    import h5py
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # *.tmp: removed by the next run if we are killed
    try:
        with h5py.File(tmp, "w", track_order=True) as h5:
            h5.attrs["label_order"] = ",".join(names)
            for split, (pixels, labels, ids) in table.items():
                usage = SPLIT_TO_USAGE[split]
                h5.create_dataset(f"{usage}_pixel", data=pixels, track_times=False)
                h5.create_dataset(f"{usage}_label", data=labels, track_times=False)
                h5.create_dataset(f"{usage}_id", data=np.array(ids, dtype="S"), track_times=False)
        return atomic_write_bytes(path, tmp.read_bytes())
    finally:
        tmp.unlink(missing_ok=True)


def write_table(folder: Path, table, names) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "fer2013.csv", fer2013_csv_text(table))
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


def write_yolo_split(layout, split: str, tasks) -> None:
    root = layout.out / "yolo"
    images = [layout.yolo(split, t.stem)[0] for t in tasks]
    write_list(root / f"{DARKNET_LIST[split]}.txt", images)
    atomic_write_text(root / f"sources_{split}.csv",
                      "stem,image\n" + "".join(f"{t.stem},{t.image}\n" for t in tasks))
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
