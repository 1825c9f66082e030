"""`make partial`: start a detector from a trained classifier's backbone (the Ultralytics analogue of
`darknet partial`). Copies the classifier's backbone layers (0-8 of v8n; 0-15 of vggdet) by index, tensor name and
shape, reports what moved, and writes an Ultralytics checkpoint the detector trains from."""
from __future__ import annotations

import argparse
from pathlib import Path

from converters.errors import run_cli
from converters.labels import class_names
from converters.settings import WEIGHTS_DIR


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.partial", description=__doc__)
    p.add_argument("--backend", choices=("ultralytics", "darknet"), default="ultralytics")
    p.add_argument("--layers", type=int, default=9, help="darknet: layers to keep (the classifier shares 9 with v3-tiny)")
    p.add_argument("--run", type=Path, default=None, help="darknet: classifier run folder (default runs/darknet/cls)")
    p.add_argument("--cls-weights", type=Path, default=WEIGHTS_DIR / "cls.pt",
                   help="trained classifier: an Ultralytics -cls checkpoint or an EmoDet torch v8n-cls / vggdet-cls "
                        "one (e.g. weights/fer2013-vggdet-cls.pt with --cfg vggdet)")
    p.add_argument("--cfg", default="v8n", help="detector: v8n, v8s, 11n, vggdet, v3-tiny or a model yaml")
    p.add_argument("--classes", type=int, choices=(7, 8), default=7)
    p.add_argument("--out", type=Path, default=None, help="default: weights/<cfg>-from-cls.pt")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.backend == "darknet":
        from converters.settings import RUNS_DIR
        from scripts import darknet
        run = args.run or RUNS_DIR / "darknet" / "cls"
        cfg, weights = run / "emotion-classifier.cfg", run / "backup" / "emotion-classifier.weights"
        probe = darknet.render_cfg("yolov3-tiny", run / "yolov3-tiny-shape-check.cfg", batch=1, subdivisions=1,
                                   size=160, learning_rate=0.001, burn_in=1, max_batches=1, steps="1,1",
                                   filters=(args.classes + 5) * 3, classes=args.classes,
                                   anchors="10,14, 23,27, 37,58, 81,82, 135,169, 344,319")
        out = args.out or WEIGHTS_DIR / f"emotion-classifier.conv.{args.layers}"
        darknet.partial(cfg, weights, out, args.layers, det_cfg=probe)
        print(f"kept layers 0-{args.layers - 1} of {weights} (seen reset to 0): {out}")
        return 0
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
