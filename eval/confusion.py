"""Classifier evaluation on a split: top-1/top-k, micro and macro P/R/F1, per-class table, confusion matrix
(counts CSV + row-normalised PNG), optional ten-crop TTA and per-group (bias) metrics.

  python eval/confusion.py --split PrivateTest                      # shipped FER2013 model, FER2013 test split
  python eval/confusion.py --split PrivateTest --tta tencrop --json out.json
  python eval/confusion.py --split val --data data/affectnet/crops/48 --weights runs/.../best.pt
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from converters.errors import EmoDetError, run_cli
from converters.io import write_json
from converters.settings import DEFAULT_CLASSIFIER, FER2013_TABLE, RUNS_DIR
from eval.classification_report import report_text, write_outputs
from eval.classify_data import split_name
from scripts.scoring import ensure_default_data, evaluate_classifier

# A front door: the command line over scripts.scoring (which loads the classifier), so nothing imports this file.
DEFAULT_DATA = FER2013_TABLE
SHIPPED = (DEFAULT_CLASSIFIER, DEFAULT_CLASSIFIER.with_suffix(".pt"))


def default_weights() -> Path:
    for p in SHIPPED:
        if p.exists():
            return p
    raise EmoDetError(f"no shipped model {SHIPPED[0].name} in {SHIPPED[0].parent}; pass --weights "
                      f"(e.g. runs/torch/fer2013/best.pt)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python eval/confusion.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--split", default="PrivateTest", help="PrivateTest/PublicTest/Training or test/val/train")
    p.add_argument("--weights", type=Path, default=None, help="classifier (.pt/.onnx); default: the shipped model")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="HDF5 table or crops folder (crops/<size>)")
    p.add_argument("--topk", type=int, default=2)
    p.add_argument("--tta", choices=("none", "flip", "tencrop"), default=None,
                   help="test-time views: centre crop, + its mirror (2x cost), or ten crops (10x); default: the "
                        "model's own (the one it was selected with, e.g. flip for faces-vggc; else none)")
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
