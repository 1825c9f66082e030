"""Faces and labels of one split of a converted classification set (HDF5 table or crops folders)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from converters.errors import EmoDetError
from converters.labels import CANONICAL_NAMES, SPLIT_TO_USAGE, USAGE_TO_SPLIT

SPLIT_ALIASES = {**{u.lower(): s for u, s in USAGE_TO_SPLIT.items()}, "train": "train", "val": "val", "test": "test",
                 "valid": "val", "validation": "val", "training": "train"}


def split_name(split: str) -> str:
    """train/val/test from any of our names or FER2013's Usage names (case-insensitive)."""
    key = split.lower()
    if key not in SPLIT_ALIASES:
        raise EmoDetError(f"unknown split {split!r}; use Training/PublicTest/PrivateTest or train/val/test")
    return SPLIT_ALIASES[key]


def load_faces(data: Path, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(faces uint8 (N, S, S), canonical labels, ids) from an HDF5 table or a crops folder
    (`<data>/<split>/<class>/*.png`, class taken from the folder name)."""
    data, split = Path(data), split_name(split)
    if data.suffix in (".h5", ".hdf5"):
        import h5py
        usage = SPLIT_TO_USAGE[split]
        if not data.exists():
            raise EmoDetError(f"{data}: not found; run `make convert-fer2013` first")
        with h5py.File(data, "r") as h5:
            if f"{usage}_pixel" not in h5:
                raise EmoDetError(f"{data}: has no {usage} split (has: {', '.join(k for k in h5 if k.endswith('_pixel'))})")
            px, y = h5[f"{usage}_pixel"][:], h5[f"{usage}_label"][:]
            ids = [i.decode() for i in h5[f"{usage}_id"][:]] if f"{usage}_id" in h5 else [str(i) for i in range(len(y))]
        side = int(round(np.sqrt(px.shape[1])))
        return px.reshape(-1, side, side), y.astype(np.int64), ids
    folder = data / split
    files = sorted(folder.glob("*/*.png"))
    if not files:
        raise EmoDetError(f"{folder}: no <class>/*.png crops")
    faces, labels = [], []
    for f in files:
        if f.parent.name not in CANONICAL_NAMES:
            raise EmoDetError(f"{f}: folder {f.parent.name!r} is not a class name")
        img = cv2.imread(str(f), cv2.IMREAD_GRAYSCALE)
        if img is None:
            raise EmoDetError(f"{f}: undecodable image")
        faces.append(img)
        labels.append(CANONICAL_NAMES.index(f.parent.name))
    return np.stack(faces), np.array(labels, np.int64), [f.stem for f in files]


def load_groups(path: Path, ids: list[str]) -> dict[str, np.ndarray]:
    """Group columns (e.g. gender, age) for each id from a CSV whose first column is the image id."""
    import pandas as pd
    df = pd.read_csv(path, dtype=str, keep_default_na=False)
    key = df.columns[0]
    df = df.set_index(key)
    missing = [i for i in ids if i not in df.index]
    if missing:
        raise EmoDetError(f"{path}: no row for {len(missing)} image id(s), e.g. {missing[0]!r}")
    return {c: df.loc[ids, c].to_numpy() for c in df.columns}
