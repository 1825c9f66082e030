"""`make train-detector CFG=v8n|11n|v3-tiny`: train a one-stage emotion detector on the YOLO set with
Ultralytics, from scratch or from `make partial`'s classifier-initialised checkpoint (--init)."""
from __future__ import annotations

import argparse
from pathlib import Path

from converters.errors import run_cli
from converters.settings import DATA_DIR, RUNS_DIR


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.train_detector", description=__doc__)
    p.add_argument("--backend", choices=("ultralytics",), default="ultralytics")
    p.add_argument("--cfg", default="v8n", help="v8n, 11n, v3-tiny or a model yaml (used when --init is absent)")
    p.add_argument("--init", type=Path, default=None, help="checkpoint from `make partial` (classifier backbone)")
    p.add_argument("--data", type=Path, default=DATA_DIR / "affectnet" / "yolo" / "data.yaml")
    p.add_argument("--epochs", type=int, default=None, help="default: cfg/ultralytics.yaml")
    p.add_argument("--imgsz", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--freeze", type=int, default=0, help="freeze the first N layers (e.g. 9 = the transferred backbone)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="det")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from scripts import ultra
    best = ultra.train_detector(args.data, args.init or args.cfg, args.epochs, args.imgsz, args.batch, args.workers,
                                args.seed, RUNS_DIR / "ultralytics", args.name, freeze=args.freeze or None)
    print(f"detector: {best} (copied to {ultra.publish(best, args.name)}; Ultralytics {ultra.version()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
