"""The "AffectNet + FER2013" training table: one header, FER2013 codes, exact-duplicate faces removed, a source
column kept. AffectNet comes from any conversion's table parts (48 px grey crops); FER2013 from its CSV."""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from .errors import EmoDetError, run_cli
from .fer2013 import read_fer2013
from .io import atomic_write_text
from .labels import SPLIT_TO_USAGE, canonical_to_fer2013, class_names
from .settings import DATA_DIR, fer2013_dir
from .writers import _PIXEL_TEXT, load_table_parts, write_h5


def merged_training_table(sources: dict[str, tuple[np.ndarray, np.ndarray]]
                          ) -> tuple[np.ndarray, np.ndarray, list[str], dict[str, int]]:
    """Concatenate (pixels, canonical labels) per source in the given order, dropping faces whose pixels
    exactly repeat an earlier one. Returns pixels, labels, source per row, and duplicates removed per source."""
    seen: set[bytes] = set()
    keep_px, keep_y, keep_src, dropped = [], [], [], {}
    for name, (pixels, labels) in sources.items():
        dropped[name] = 0
        for p, y in zip(pixels, labels):
            key = hashlib.blake2b(p.tobytes(), digest_size=16).digest()
            if key in seen:
                dropped[name] += 1
                continue
            seen.add(key)
            keep_px.append(p)
            keep_y.append(int(y))
            keep_src.append(name)
    px = np.stack(keep_px) if keep_px else np.zeros((0, 2304), np.uint8)
    return px, np.array(keep_y, dtype=np.int64), keep_src, dropped


def merged_csv_text(pixels, labels, sources, usage: str = "Training") -> str:
    lines = ["emotion,pixels,Usage,source"]
    lines += [f"{canonical_to_fer2013(y)},{' '.join(_PIXEL_TEXT[p])},{usage},{s}"
              for p, y, s in zip(pixels, labels, sources)]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m converters.merge", description=__doc__)
    p.add_argument("--affectnet", type=Path, default=DATA_DIR / "affectnet", help="an AffectNet conversion folder")
    p.add_argument("--fer2013", type=Path, default=None, help="fer2013.csv(.gz) (default: shared datasets)")
    p.add_argument("--out", type=Path, default=DATA_DIR / "merged")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    parts = load_table_parts(args.affectnet / "table" / "parts")
    if "train" not in parts:
        raise EmoDetError(f"{args.affectnet}: no converted AffectNet train table; run `make convert` with the table format")
    fer = args.fer2013 or fer2013_dir() / "fer2013.csv.gz"
    records, _ = read_fer2013(fer)
    fer_px = np.stack([r.pixels.reshape(-1) for r in records["train"]])
    fer_y = np.array([r.expression for r in records["train"]])
    px, y, src, dropped = merged_training_table({"fer2013": (fer_px, fer_y),
                                                 "affectnet": parts["train"][:2]})
    atomic_write_text(args.out / "train.csv", merged_csv_text(px, y, src))
    args.out.mkdir(parents=True, exist_ok=True)
    write_h5(args.out / "train.h5", {"train": (px, y, [f"{s}:{i}" for i, s in enumerate(src)])}, class_names(7))
    print(f"{len(y)} training faces ({src.count('fer2013')} FER2013, {src.count('affectnet')} AffectNet); "
          f"exact duplicates removed: " + ", ".join(f"{k} {v}" for k, v in dropped.items()))
    print(f"wrote {args.out / 'train.csv'} and {args.out / 'train.h5'} ({SPLIT_TO_USAGE['train']} only)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
