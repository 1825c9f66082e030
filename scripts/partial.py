"""`make partial`: start a detector from a trained classifier's backbone (the Ultralytics analogue of
`darknet partial`). Copies layers 0-8 by index, tensor name and shape, reports what moved, and writes an
Ultralytics checkpoint the detector trains from."""
from __future__ import annotations

import argparse
from pathlib import Path

from converters.errors import run_cli
from converters.labels import class_names
from converters.settings import WEIGHTS_DIR


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.partial", description=__doc__)
    p.add_argument("--backend", choices=("ultralytics",), default="ultralytics")
    p.add_argument("--cls-weights", type=Path, default=WEIGHTS_DIR / "cls.pt", help="trained -cls checkpoint")
    p.add_argument("--cfg", default="v8n", help="detector: v8n, 11n, v3-tiny or a model yaml")
    p.add_argument("--classes", type=int, choices=(7, 8), default=7)
    p.add_argument("--out", type=Path, default=None, help="default: weights/<cfg>-from-cls.pt")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from scripts import ultra
    model, report = ultra.transfer_backbone(args.cls_weights, args.cfg, args.classes)
    out = args.out or WEIGHTS_DIR / f"{Path(args.cfg).stem}-from-cls.pt"
    ultra.save_detection_init(model, class_names(args.classes), out)
    total = sum(p.numel() for p in model.parameters())
    print(f"{report.summary()}; {total - report.parameters:,} of {total:,} detector values start fresh")
    print(f"layers moved: {sorted({int(k.split('.')[1]) for k in report.moved})}; wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
