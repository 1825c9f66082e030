"""`make partial`: start a detector from a trained classifier's backbone (the Ultralytics analogue of
`darknet partial`). Copies the classifier's backbone layers (0-8 of v8n; 0-15 of vggdet) by index, tensor name and
shape, reports what moved, and writes an Ultralytics checkpoint the detector trains from."""
from __future__ import annotations

import argparse
from pathlib import Path

from converters.errors import EmoDetError, run_cli
from converters.labels import class_names
from converters.settings import WEIGHTS_DIR


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.partial", description=__doc__)
    p.add_argument("--backend", choices=("ultralytics", "darknet"), default="ultralytics")
    p.add_argument("--layers", type=int, default=None,
                   help="darknet: layers to keep (default: all the detector shares with its classifier: 9 for "
                        "v3-tiny, 29 for v4-tiny, 105 for v4)")
    p.add_argument("--run", type=Path, default=None, help="darknet: classifier run folder (default runs/darknet/cls)")
    p.add_argument("--cls-weights", type=Path, default=WEIGHTS_DIR / "cls.pt",
                   help="trained classifier: an Ultralytics -cls checkpoint or an EmoDet torch v8n-cls / vggdet-cls "
                        "one (e.g. weights/fer2013-vggdet-cls.pt with --cfg vggdet)")
    p.add_argument("--cfg", default="v8n", help="detector: v8n, v8s, 11n, vggdet or a model yaml; darknet: v3-tiny, "
                                                "v4-tiny or v4")
    p.add_argument("--classes", type=int, choices=(7, 8), default=7)
    p.add_argument("--out", type=Path, default=None, help="default: weights/<cfg>-from-cls.pt")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.backend == "darknet":
        from converters.settings import RUNS_DIR
        from scripts import darknet
        detector = "v3-tiny" if args.cfg == "v8n" else args.cfg
        template, shared = darknet.backbone_of(detector)
        layers = args.layers or shared
        run = args.run or RUNS_DIR / "darknet" / "cls"
        cfg = run / f"{template}.cfg"
        weights = darknet.final_weights(run / "backup", template)
        if weights is None:
            raise EmoDetError(f"no trained {template} classifier in {run / 'backup'}; run `make train-classifier "
                              f"BACKEND=darknet` with the matching MODEL first")
        probe = darknet.shape_check_cfg(detector, run / f"{detector}-shape-check.cfg", 256, args.classes)
        out = args.out or WEIGHTS_DIR / f"{template}.conv.{layers}"
        darknet.partial(cfg, weights, out, layers, det_cfg=probe)
        print(f"kept layers 0-{layers - 1} of {weights} (seen reset to 0) for {detector}: {out}")
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
