"""Class balance of a converted set: report + bar chart, class weights, oversampling with light augmentation,
and stratified k-fold split files. Works on the crops layout `crops/<size>/<split>/<class>/*.png`."""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import cv2
import numpy as np

from .errors import EmoDetError, run_cli
from .io import atomic_write_bytes, atomic_write_text
from .labels import CANONICAL_NAMES

SPLITS = ("train", "val", "test")


def crop_index(crops_root: Path) -> dict[str, list[tuple[Path, str]]]:
    """split -> sorted [(png path, class name)] of a crops folder (e.g. data/fer2013/crops/48)."""
    out = {}
    for split in SPLITS:
        d = Path(crops_root) / split
        if d.is_dir():
            out[split] = [(p, p.parent.name) for p in sorted(d.glob("*/*.png"))]
    if not out:
        raise EmoDetError(f"{crops_root}: no train/val/test crop folders; convert a dataset first")
    return out


def class_counts(index: dict[str, list[tuple[Path, str]]], names) -> dict[str, dict[str, int]]:
    return {split: {n: sum(1 for _, c in items if c == n) for n in names} for split, items in index.items()}


def class_weights(counts: dict[str, int]) -> dict[str, float]:
    """Inverse-frequency weights scaled to mean 1 over the classes present (for weighted cross-entropy)."""
    present = {k: v for k, v in counts.items() if v > 0}
    total, k = sum(present.values()), len(present)
    return {n: (total / (k * present[n]) if n in present else 0.0) for n in counts}


def plot_counts(counts: dict[str, dict[str, int]], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(next(iter(counts.values())))
    fig, ax = plt.subplots(figsize=(8, 4))
    width = 0.8 / len(counts)
    for i, (split, c) in enumerate(counts.items()):
        ax.bar(np.arange(len(names)) + i * width, [c[n] for n in names], width, label=split)
    ax.set_xticks(np.arange(len(names)) + width * (len(counts) - 1) / 2, names)
    ax.set_ylabel("faces")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def augmented(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Light augmentation: mirror, rotation ±10°, shift ±6 %, brightness ×0.8-1.2 (borders replicated)."""
    h, w = img.shape[:2]
    if rng.random() < 0.5:
        img = img[:, ::-1]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-10, 10), 1.0)
    m[:, 2] += rng.uniform(-0.06, 0.06, 2) * [w, h]
    out = cv2.warpAffine(np.ascontiguousarray(img), m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return np.clip(out.astype(np.float32) * rng.uniform(0.8, 1.2), 0, 255).astype(np.uint8)


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if not dst.exists():
        try:
            os.link(src, dst)
        except OSError:
            atomic_write_bytes(dst, src.read_bytes())


def oversample(crops_root: Path, out_root: Path, seed: int = 0) -> dict[str, int]:
    """Copy of the crops folder whose train split has every class topped up to the largest class with augmented
    copies (`<id>_aug<k>.png`); val/test are linked unchanged. Returns the train count per class."""
    index = crop_index(crops_root)
    rng = np.random.default_rng(seed)
    for split, items in index.items():
        for p, c in items:
            _link(p, Path(out_root) / split / c / p.name)
    by_class: dict[str, list[Path]] = {}
    for p, c in index.get("train", []):
        by_class.setdefault(c, []).append(p)
    target = max(len(v) for v in by_class.values())
    for c, files in sorted(by_class.items()):
        for k in range(target - len(files)):
            src = files[k % len(files)]
            img = cv2.imread(str(src), cv2.IMREAD_UNCHANGED)
            ok, buf = cv2.imencode(".png", augmented(img, rng))
            atomic_write_bytes(Path(out_root) / "train" / c / f"{src.stem}_aug{k}.png", buf.tobytes())
    return {c: target for c in by_class}


def stratified_folds(labels: np.ndarray, k: int, seed: int = 0,
                     groups: np.ndarray | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train rows, held-out rows) pairs: every row held out once, classes in the same proportions in each fold,
    seeded; with `groups` (e.g. a person's identity) no group on both sides of any fold."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold
    if k < 2:
        raise EmoDetError(f"k-fold needs k >= 2, got {k}")
    if len(labels) < k:
        raise EmoDetError(f"k-fold with k={k} needs at least {k} rows, got {len(labels)}")
    if groups is None:
        return list(StratifiedKFold(k, shuffle=True, random_state=seed).split(np.zeros(len(labels)), labels))
    if len(set(groups)) < k:
        raise EmoDetError(f"k-fold with k={k} needs at least {k} groups, got {len(set(groups))}")
    splitter = StratifiedGroupKFold(k, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels, groups))


def fold_of_rows(labels: np.ndarray, k: int, seed: int = 0, groups: np.ndarray | None = None) -> np.ndarray:
    """The fold (0..k-1) in which each row is held out (see stratified_folds)."""
    fold = np.full(len(labels), -1, dtype=np.int64)
    for i, (_, held) in enumerate(stratified_folds(labels, k, seed, groups)):
        fold[held] = i
    return fold


def write_folds(crops_root: Path, out: Path, k: int, seed: int = 0, split: str = "train") -> Path:
    """`out/k<k>/fold<i>/{train,val}.txt` listing crop paths of `split`, stratified by class, fixed seed."""
    items = crop_index(crops_root).get(split)
    if not items:
        raise EmoDetError(f"{crops_root}/{split}: no crops to fold")
    paths = np.array([str(p) for p, _ in items])
    labels = np.array([c for _, c in items])
    root = Path(out) / f"k{k}"
    for i, (tr, va) in enumerate(stratified_folds(labels, k, seed)):
        atomic_write_text(root / f"fold{i}" / "train.txt", "\n".join(paths[tr]) + "\n")
        atomic_write_text(root / f"fold{i}" / "val.txt", "\n".join(paths[va]) + "\n")
    return root


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m converters.balance", description=__doc__)
    p.add_argument("--data", type=Path, default=Path("data/fer2013"), help="a converted dataset folder")
    p.add_argument("--size", type=int, default=48, help="crop size folder to use")
    p.add_argument("--weights", action="store_true", help="write class_weights.json (train split)")
    p.add_argument("--oversample", action="store_true", help="write crops_balanced/<size>/ with augmented copies")
    p.add_argument("--folds", type=int, default=0, help="write stratified k-fold lists (k >= 2)")
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    crops = args.data / "crops" / str(args.size)
    index = crop_index(crops)
    names = [n for n in CANONICAL_NAMES if any(c == n for items in index.values() for _, c in items)]
    counts = class_counts(index, names)
    print(f"{'class':10s}" + "".join(f"{s:>9s}" for s in counts))
    for n in names:
        print(f"{n:10s}" + "".join(f"{counts[s][n]:9d}" for s in counts))
    print(f"{'total':10s}" + "".join(f"{sum(c.values()):9d}" for c in counts.values()))
    chart = args.data / "balance.png"
    plot_counts(counts, chart, f"{args.data.name}: faces per class")
    print(f"bar chart: {chart}")
    if args.weights:
        w = class_weights(counts["train"])
        atomic_write_text(args.data / "class_weights.json", json.dumps(w, indent=1) + "\n")
        print("class weights: " + ", ".join(f"{k} {v:.2f}" for k, v in w.items()))
    if args.oversample:
        per = oversample(crops, args.data / "crops_balanced" / str(args.size), args.seed)
        print(f"oversampled train to {next(iter(per.values()))} per class: {args.data / 'crops_balanced' / str(args.size)}")
    if args.folds:
        print(f"folds: {write_folds(crops, args.data / 'folds', args.folds, args.seed)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
