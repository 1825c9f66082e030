"""`emodet`: one command over the project's command lines (what the Make targets call).

  emodet convert --input DATASET --out data/x        emodet predict photo.jpg|folder|video|0|rtsp://...
  emodet train --recipe cfg/recipes/real-det.yaml    emodet eval --gt YOLO_FOLDER --weights W
  emodet --help, emodet <command> --help
"""
from __future__ import annotations

import importlib
import sys

# command -> (module whose main(argv) runs it, one line of what it does)
COMMANDS = {
    "sample": ("converters.synthetic", "write the synthetic AffectNet-format sample"),
    "convert": ("converters.convert", "a dataset (AffectNet, YOLO export, face photos) -> crops, Darknet, table, YOLO"),
    "convert-fer2013": ("converters.fer2013", "FER2013 (+FER+) -> the same formats"),
    "scenes": ("converters.scenes", "FER2013 faces composed into scenes (a detection set)"),
    "grids": ("converters.grids", "labelled face photos tiled small into grids (a detection set of small real faces)"),
    "merge": ("converters.merge", "AffectNet + FER2013 training table"),
    "balance": ("converters.balance", "class balance report, weights, k-fold lists"),
    "train": ("scripts.train_recipe", "train a shipped model from its recipe file (cfg/recipes/*.yaml)"),
    "train-classifier": ("scripts.train_classifier", "train an emotion classifier (Ultralytics, torch or Darknet)"),
    "kfold": ("scripts.kfold", "k-fold training and evaluation of a classifier recipe (out-of-fold probabilities)"),
    "label-issues": ("eval.label_issues", "likely label errors ranked from out-of-fold probabilities (cleanlab)"),
    "partial": ("scripts.partial", "move a classifier's backbone into a detector checkpoint"),
    "train-detector": ("scripts.train_detector", "train a one-stage emotion detector"),
    "predict": ("scripts.predict", "annotate photos, folders, videos, cameras or streams"),
    "eval": ("eval.detection", "detection mAP / P / R / F1 in the Darknet, Ultralytics or COCO convention"),
    "eval-classifier": ("eval.confusion", "classifier top-k, P/R/F1, confusion matrix"),
    "export": ("scripts.export", "ONNX export (and int8 copies of the FER classifiers)"),
    "bench": ("scripts.bench", "benchmarks -> BENCHMARKS.md"),
    "app": ("scripts.app", "the local web app"),
    "build-darknet": ("scripts.darknet_build", "build AlexeyAB Darknet from source into build/darknet"),
    "demo": ("scripts.demo", "the whole pipeline on the synthetic sample"),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    return (__doc__.strip() + "\n\ncommands:\n" +
            "\n".join(f"  {name:{width}s}  {what}" for name, (_, what) in COMMANDS.items()))


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"error: unknown command {name!r}; `emodet --help` lists them", file=sys.stderr)
        return 2
    from converters.errors import run_cli
    module = importlib.import_module(COMMANDS[name][0])  # imported on demand: `emodet --help` stays instant
    return run_cli(module.main, rest)


if __name__ == "__main__":
    raise SystemExit(main())
