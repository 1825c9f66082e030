"""`make train-detector CFG=v8n|11n|v3-tiny`: train a one-stage emotion detector on the YOLO set with
Ultralytics, from scratch or from `make partial`'s classifier-initialised checkpoint (--init)."""
from __future__ import annotations

import argparse
from pathlib import Path

from converters.errors import EmoDetError, run_cli
from scripts.device import DEVICE_HELP
from converters.settings import DATA_DIR, RUNS_DIR


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.train_detector", description=__doc__)
    p.add_argument("--backend", choices=("ultralytics", "darknet"), default="ultralytics")
    p.add_argument("--cfg", default="v8n", help="v8n, v8s, 11n, vggdet, v3-tiny or a model yaml (used when --init is "
                   "absent)")
    p.add_argument("--init", type=Path, default=None, help="checkpoint from `make partial` (classifier backbone)")
    p.add_argument("--data", type=Path, default=DATA_DIR / "affectnet" / "yolo" / "data.yaml")
    p.add_argument("--epochs", type=int, default=None, help="default: cfg/ultralytics.yaml")
    p.add_argument("--imgsz", type=int, default=None)
    p.add_argument("--batch", type=int, default=None)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--freeze", type=int, default=0, help="freeze the first N layers for the whole run")
    p.add_argument("--freeze-epochs", type=int, default=0,
                   help="with --init: keep the transferred backbone (layers 0-8) frozen for the first K epochs only")
    p.add_argument("--hours", type=float, default=None,
                   help="ultralytics: wall-clock budget; overrides --epochs and fits the schedule to it")
    p.add_argument("--device", default=None, help=DEVICE_HELP.replace("default: auto", "default: cfg/ultralytics.yaml"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="det")
    return p


def train_darknet(args) -> int:
    """yolov3-tiny / yolov4-tiny / yolov4 with the Darknet binary (160 px, random=0), then `detector valid` scored by
    eval/; on AlexeyAB/Hank.ai builds also `detector map` on the same list, both numbers printed and recorded."""
    from converters.io import write_json
    from eval.detection_report import evaluate_folders, report_text
    from scripts import darknet
    yolo = args.data.parent if args.data.name == "data.yaml" else args.data
    run = RUNS_DIR / "darknet" / args.name
    cfg, weights = darknet.train_detector(yolo, run, args.init, epochs=args.epochs or 10, size=args.imgsz or 160,
                                          batch=args.batch or 16, model=args.cfg, device=args.device)
    darknet.training_curve(run / "train-detector.log", run / "train-detector.csv", run / "train-detector.png")
    results = (darknet.detector_test if darknet.has_map() else darknet.validate_detector)(cfg, weights,
                                                                                          run / "emotion.data", run)
    m = evaluate_folders(yolo / "val", results, "darknet", yolo / "emotion.names", map_view=darknet.has_map())
    m["engine"] = darknet.engine()["label"]
    print(report_text(m))
    if darknet.has_map():
        m["detector_map"] = darknet.detector_map(cfg, weights, run / "emotion.data", run)
        print(f"{m['engine']} `detector map`: mAP@0.5 {m['detector_map']['map50']:.4f} (ours, Darknet style on "
              f"`detector valid` output: {m['map50']:.4f})")
    print(f"weights {weights}; metrics {write_json(run / 'metrics.json', m.to_json())}; loss curve {run / 'train-detector.png'}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.backend == "darknet":
        return train_darknet(args)
    from scripts import ultra
    if args.freeze_epochs:
        if not args.init:
            raise EmoDetError("--freeze-epochs needs --init (a backbone to keep frozen)")
        epochs = args.epochs or ultra.defaults("detect")["epochs"]
        best = ultra.train_detector_frozen_first(args.data, args.init, args.freeze_epochs, epochs,
                                                 project=RUNS_DIR / "ultralytics", name=args.name, imgsz=args.imgsz,
                                                 batch=args.batch, workers=args.workers, seed=args.seed,
                                                 device=args.device)
    else:
        best = ultra.train_detector(args.data, args.init or args.cfg, args.epochs, args.imgsz, args.batch,
                                    args.workers, args.seed, RUNS_DIR / "ultralytics", args.name,
                                    freeze=args.freeze or None, time=args.hours, device=args.device)
    print(f"detector: {best} (copied to {ultra.publish(best, args.name)}; Ultralytics {ultra.version()})")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
