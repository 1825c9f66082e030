"""`make train-classifier BACKEND=ultralytics|torch`: pretrain an emotion classifier on converted crops.

ultralytics: a -cls model (v8n/11n or a yaml) on `crops/<size>` (class folders); best.pt copied to weights/.
torch: the FER classifier on an HDF5 table (all options of `python -m scripts.torch_classifier --help`).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from converters.errors import run_cli
from converters.settings import DATA_DIR, RUNS_DIR
from scripts.device import DEVICE_HELP


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.train_classifier", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backend", choices=("ultralytics", "torch", "darknet"), default="ultralytics")
    p.add_argument("--darknet-data", type=Path, default=DATA_DIR / "affectnet" / "darknet" / "48",
                   help="darknet: a converted Darknet classifier set")
    p.add_argument("--crops", type=Path, default=DATA_DIR / "affectnet" / "crops" / "48")
    p.add_argument("--model", default="v8n", help="ultralytics: v8n, 11n or a -cls yaml; darknet: small (default, shares "
                                                 "yolov3-tiny's first 9 layers), v4-tiny (yolov4-tiny's first 29) or "
                                                 "csdarknet53-omega (yolov4's first 105; the last two need AlexeyAB)")
    p.add_argument("--epochs", type=int, default=None, help="default: cfg/ultralytics.yaml")
    p.add_argument("--imgsz", type=int, default=None, help="multiple of 32 (default: cfg/ultralytics.yaml)")
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--hours", type=float, default=None,
                   help="ultralytics: wall-clock budget; overrides --epochs and fits the schedule to it")
    p.add_argument("--device", default=None, help=DEVICE_HELP.replace("default: auto", "default: cfg/ultralytics.yaml"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="cls", help="run name under runs/ultralytics/ and weights/<name>.pt")
    return p


def train_darknet(args) -> int:
    """Darknet classifier (cfg/emotion-classifier.cfg.in, or the yolov4-tiny / csdarknet53-omega backbones) on the
    converted set, then `classifier valid`; the numbers and the engine that produced them go to metrics.json."""
    from converters.io import write_json
    from scripts import darknet
    run = RUNS_DIR / "darknet" / args.name
    model = "small" if args.model in ("v8n", None) else args.model
    if darknet.classifier_size(model) == 48:  # the small classifier reads the set's own face size
        size = args.imgsz or (int(args.darknet_data.name) if args.darknet_data.name.isdigit() else 48)
    else:
        size = args.imgsz or darknet.classifier_size(model)
    print(f"engine: {darknet.engine()['label']}")
    cfg, weights = darknet.train_classifier(args.darknet_data, run, epochs=args.epochs or 10, batch=args.batch or 32,
                                            size=size, model=model, device=args.device)
    darknet.training_curve(run / "train-classifier.log", run / "train-classifier.csv", run / "train-classifier.png")
    v = darknet.validate_classifier(cfg, weights, run / "classifier.data", run)
    write_json(run / "metrics.json", dict(v, cfg=str(cfg), weights=str(weights), engine=darknet.engine()["label"]))
    print(f"Darknet classifier: {weights} (cfg {cfg}); validation top-1 {v['top1']:.4f}, top-{v['k']} {v['topk']:.4f} "
          f"on {v['n']} faces; loss/top-k curve {run / 'train-classifier.png'}")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    backend = argparse.ArgumentParser(add_help=False)
    backend.add_argument("--backend", choices=("ultralytics", "torch", "darknet"), default="ultralytics")
    chosen, rest = backend.parse_known_args(argv)
    if chosen.backend == "torch":  # every other option belongs to the torch trainer
        from scripts.torch_classifier import main as torch_main
        return torch_main(rest)
    args = build_parser().parse_args(argv)
    if args.backend == "darknet":
        return train_darknet(args)
    from scripts import ultra
    best = ultra.train_classifier(args.crops, args.model, args.epochs, args.imgsz, args.batch, args.workers,
                                  args.seed, RUNS_DIR / "ultralytics", args.name, time=args.hours, device=args.device)
    print(f"classifier: {best} (copied to {ultra.publish(best, args.name)}; Ultralytics {ultra.version()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
