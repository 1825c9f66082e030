"""Classifier evaluation on a split: top-1/top-k, micro and macro P/R/F1, per-class table, confusion matrix
(counts CSV + row-normalised PNG), optional ten-crop TTA and per-group (bias) metrics.

  python eval/confusion.py --split PrivateTest                      # shipped FER2013 model, FER2013 test split
  python eval/confusion.py --split PrivateTest --tta tencrop --json out.json
  python eval/confusion.py --split val --data data/affectnet/crops/48 --weights runs/.../best.pt
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from converters.errors import EmoDetError, run_cli
from converters.io import write_json
from converters.labels import SPLIT_TO_USAGE
from converters.settings import DATA_DIR, FER2013_MODEL, FER2013_TABLE, RUNS_DIR, fer2013_dir
from eval.classification import classification_metrics, group_metrics
from eval.classify_data import load_faces, load_groups, split_name
from eval.plots import plot_confusion

DEFAULT_DATA = FER2013_TABLE
SHIPPED = (FER2013_MODEL, FER2013_MODEL.with_suffix(".pt"))


def default_weights() -> Path:
    for p in SHIPPED:
        if p.exists():
            return p
    raise EmoDetError(f"no shipped model {SHIPPED[0].name} in {SHIPPED[0].parent}; pass --weights "
                      f"(e.g. runs/torch/fer2013/best.pt)")


def ensure_default_data(data: Path) -> Path:
    """The FER2013 table, converted from the shared dataset on first use."""
    if data != DEFAULT_DATA or data.exists():
        return data
    src = fer2013_dir() / "fer2013.csv.gz"
    if not src.exists():
        raise EmoDetError(f"{data}: not found, and no FER2013 at {src} to build it from (set EMODET_DATASETS)")
    print(f"converting {src} -> {data.parent.parent} (first use)", file=sys.stderr)
    from converters.fer2013 import main as convert_main
    convert_main(["--out", str(DATA_DIR), "--formats", "table", "--quiet"])
    return data


def evaluate_classifier(weights: Path, data: Path, split: str, k: int = 2, tta: str = "none",
                        groups: Path | None = None, n_classes: int = 7, input_size: int | None = None) -> dict:
    from scripts.classifiers import load_classifier
    faces, labels, ids = load_faces(data, split)
    clf = load_classifier(weights, input_size=input_size)
    t0 = time.perf_counter()
    scores = clf.canonical_scores(faces, n_classes, tta)
    seconds = time.perf_counter() - t0
    from converters.labels import class_names
    m = classification_metrics(scores, labels, class_names(n_classes), k)
    m.update(split=split, data=str(data), weights=str(weights), backend=clf.backend, tta=tta, input_size=input_size,
             seconds=seconds, faces_per_second=len(labels) / max(seconds, 1e-9))
    if groups:
        m["groups"] = group_metrics(scores, labels, m["names"], load_groups(groups, ids), k)
    return m


def report_text(m: dict) -> str:
    lines = [f"{SPLIT_TO_USAGE[m['split']]}/{m['split']} ({m['n']} faces, {m['backend']} {Path(m['weights']).name}, TTA {m['tta']}): "
             f"top-1 {m['top1']:.4f}  top-{m['k']} {m['topk']:.4f}  macro F1 {m['macro_f1']:.4f}  "
             f"macro P {m['macro_precision']:.4f}  macro R {m['macro_recall']:.4f}",
             f"{'class':10s} {'P':>6s} {'R':>6s} {'F1':>6s} {'support':>8s}"]
    for name, c in m["per_class"].items():
        lines.append(f"{name:10s} {c['precision']:6.3f} {c['recall']:6.3f} {c['f1']:6.3f} {c['support']:8d}")
    for column, by_value in m.get("groups", {}).items():
        for value, g in by_value.items():
            lines.append(f"group {column}={value}: n {g['n']}  top-1 {g['top1']:.4f}  macro F1 {g['macro_f1']:.4f}")
    return "\n".join(lines)


def write_outputs(m: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    cm = np.array(m["confusion"])
    stem = f"confusion_{m['split']}"
    csv_path = out / f"{stem}.csv"
    csv_path.write_text("true\\pred," + ",".join(m["names"]) + "\n" +
                        "".join(f"{n}," + ",".join(map(str, row)) + "\n" for n, row in zip(m["names"], cm)))
    title = f"{SPLIT_TO_USAGE[m['split']]}: top-1 {m['top1']:.2%} (TTA {m['tta']})"
    return [csv_path, plot_confusion(cm, m["names"], out / f"{stem}.png", title)]


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python eval/confusion.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="PrivateTest", help="PrivateTest/PublicTest/Training or test/val/train")
    p.add_argument("--weights", type=Path, default=None, help="classifier (.pt/.onnx); default: the shipped model")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="HDF5 table or crops folder (crops/<size>)")
    p.add_argument("--topk", type=int, default=2)
    p.add_argument("--tta", choices=("none", "flip", "tencrop"), default="none",
                   help="test-time views: centre crop, + its mirror (2x cost), or ten crops (10x)")
    p.add_argument("--classes", type=int, choices=(7, 8), default=7)
    p.add_argument("--input-size", type=int, default=None, metavar="PX",
                   help="torch checkpoints: the face crop rendered at PX pixels instead of the model's own input "
                        "size (how a detector backbone fares on smaller or larger faces)")
    p.add_argument("--groups", type=Path, default=None, help="CSV: image id, then group columns (bias evaluation)")
    p.add_argument("--out", type=Path, default=RUNS_DIR / "eval", help="folder for the confusion CSV/PNG")
    p.add_argument("--json", type=Path, default=None)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    split = split_name(args.split)
    m = evaluate_classifier(args.weights or default_weights(), ensure_default_data(args.data), split, args.topk,
                            args.tta, args.groups, args.classes, args.input_size)
    print(report_text(m))
    for p in write_outputs(m, args.out):
        print(f"wrote {p}")
    if args.json:
        print(f"wrote {write_json(args.json, m)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
