"""Detection evaluation: mAP@0.5, mAP@0.5:0.95, per-class AP, and P/R/F1/TP/FP/FN/avg IoU at a confidence,
in the convention you name (--style darknet | ultralytics | coco; see shared/ENGINES.md).

  python eval/detection.py --gt data/affectnet/yolo/val --pred runs/predict/labels --style ultralytics
  python eval/detection.py --gt data/affectnet/yolo/valid.txt --pred results/ --format darknet --names emotion.names
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from converters.errors import EmoDetError, run_cli
from converters.io import write_json
from eval.ap import INTERPOLATIONS, pr_curve
from eval.detection_io import (check_class_ids, image_sizes, read_darknet_results, read_ground_truth, read_names,
                               read_yolo_predictions)
from eval.detection_metrics import STYLES, detection_confusion, detection_metrics, rank_predictions
from eval.plots import plot_confusion, plot_pr_curves


def load_predictions(pred: Path, fmt: str, names, gt: Path) -> dict[str, np.ndarray]:
    pred = Path(pred)
    if not pred.is_dir():
        raise EmoDetError(f"{pred}: no such predictions folder")
    if fmt == "auto":
        fmt = "darknet" if any(pred.glob("comp4_det_test_*.txt")) else "yolo"
    if fmt == "darknet":
        return read_darknet_results(pred, names, image_sizes(gt))
    return read_yolo_predictions(pred)


def evaluate_folders(gt: Path, pred: Path, style: str = "darknet", names_file: Path | None = None,
                     conf: float = 0.25, interpolation: str | None = None, fmt: str = "auto") -> dict:
    """Metrics dict for ground-truth labels vs predictions on disk (see module doc)."""
    if style not in STYLES:
        raise EmoDetError(f"style must be one of {', '.join(STYLES)}")
    chosen = STYLES[style] if interpolation is None else replace(STYLES[style], interpolation=interpolation)
    gts = read_ground_truth(gt)
    names = read_names(names_file, gts)
    check_class_ids(gts, len(names), Path(gt))
    preds = load_predictions(pred, fmt, names, gt)
    unknown = sorted(set(preds) - set(gts))
    if unknown:
        raise EmoDetError(f"{pred}: predictions for {len(unknown)} image(s) without ground truth, e.g. {unknown[0]}")
    check_class_ids(preds, len(names), Path(pred))
    ranked = rank_predictions(gts, preds, len(names), chosen)
    metrics = detection_metrics(gts, preds, names, chosen, conf, ranked=ranked)
    metrics["names"] = list(names)
    metrics["confusion"] = detection_confusion(gts, preds, len(names), conf).tolist()
    metrics["_data"] = (ranked, names, chosen)  # for write_plots; not JSON
    return metrics


def write_plots(metrics: dict, out: Path) -> list[Path]:
    r, names, style = metrics["_data"]
    curves = {}
    for c, name in enumerate(names):
        sel = r.cls == c
        if r.n_gt[c]:
            rec, prec = pr_curve(r.hits[sel, 0], int(r.n_gt[c]))
            curves[name] = (rec, prec, metrics["per_class"][name]["ap50"])
    title = f"PR @0.5 ({style.name} style): mAP50 {metrics['map50']:.3f}"
    paths = [plot_pr_curves(curves, Path(out) / "pr_curve.png", title)]
    labels = list(names) + ["background"]
    paths.append(plot_confusion(np.array(metrics["confusion"]), labels, Path(out) / "detection_confusion.png",
                                f"detections at conf {metrics['conf']:.2f}, IoU 0.45", normalise=False))
    return paths


def report_text(m: dict) -> str:
    lines = [f"style {m['style']}: AP {m['interpolation']}, match {m['match']} ({m['iou_rule']}), "
             f"mAP over {m['map_over']} classes; {m['n_images']} images, {m['n_gt']} boxes, {m['n_pred']} predictions",
             f"{'class':10s} {'n_gt':>6s} {'n_pred':>7s} {'AP50':>7s} {'AP50-95':>8s} {'P':>6s} {'R':>6s}"]
    for name, c in m["per_class"].items():
        mark = "" if c["counted"] else "  (not in mAP)"
        lines.append(f"{name:10s} {c['n_gt']:6d} {c['n_pred']:7d} {c['ap50']:7.4f} {c['ap50_95']:8.4f} "
                     f"{c['precision']:6.3f} {c['recall']:6.3f}{mark}")
    lines.append(f"mAP@0.5 {m['map50']:.4f}   mAP@0.5:0.95 {m['map50_95']:.4f}   ({m['style']} style)")
    lines.append(f"at conf {m['conf']:.3f} ({m['pr_at']}): P {m['precision']:.4f}  R {m['recall']:.4f}  "
                 f"F1 {m['f1']:.4f}  TP {m['tp']}  FP {m['fp']}  FN {m['fn']}  avg IoU {m['avg_iou']:.4f}  "
                 f"face recall@0.5 (any class) {m['agnostic_recall50']:.4f}")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python eval/detection.py", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--gt", type=Path, default=None, help="YOLO label folder, or a list file of image paths")
    p.add_argument("--pred", type=Path, default=None,
                   help="folder of YOLO+conf .txt files, or of Darknet comp4_det_test_<class>.txt files")
    p.add_argument("--weights", type=Path, default=None,
                   help="a trained detector (Ultralytics .pt/.onnx, or Darknet .weights with --cfg): predict first")
    p.add_argument("--data", type=Path, default=None,
                   help="with --weights: data.yaml (Ultralytics) or emotion.data (Darknet); evaluates its val split")
    p.add_argument("--cfg", type=Path, default=None, help="with Darknet .weights: the detector's .cfg")
    p.add_argument("--imgsz", type=int, default=None,
                   help="with --weights: inference size (default: the detector's training size, from its checkpoint)")
    p.add_argument("--format", choices=("auto", "yolo", "darknet"), default="auto")
    p.add_argument("--names", type=Path, default=None, help="class names file (default: canonical 7/8 classes)")
    p.add_argument("--style", choices=sorted(STYLES), default="darknet")
    p.add_argument("--interp", choices=INTERPOLATIONS, default=None, help="override the style's AP interpolation")
    p.add_argument("--conf", type=float, default=0.25, help="confidence for P/R/F1 (styles with a fixed threshold)")
    p.add_argument("--json", type=Path, default=None, help="write all metrics as JSON")
    p.add_argument("--plots", type=Path, default=None, help="folder for pr_curve.png and detection_confusion.png")
    return p


def predictions_from_weights(args) -> tuple[Path, Path]:
    """(ground-truth folder, prediction folder) after running --weights on the ground-truth images."""
    if Path(args.weights).suffix == ".weights":  # Darknet: `detector valid` on the .data file's valid list
        from converters.darknet_files import read_data_file
        from scripts import darknet
        if not (args.cfg and args.data and Path(args.data).suffix == ".data"):
            raise EmoDetError("Darknet .weights need --cfg DETECTOR.cfg and --data emotion.data")
        run = Path(args.pred or Path(args.weights).parent / "eval")
        entries = read_data_file(args.data)
        data_file = darknet.data_file_copy(Path(args.data), run / "eval.data", results=run / "results")
        results = darknet.validate_detector(Path(args.cfg), Path(args.weights), data_file, run)
        return Path(args.gt or entries["valid"]), results
    from scripts.predict import write_scoring_predictions
    gt = args.gt
    if gt is None and args.data:
        import yaml
        spec = yaml.safe_load(Path(args.data).read_text())
        gt = Path(spec.get("path", Path(args.data).parent)) / spec["val"]
    if gt is None or not Path(gt).is_dir():
        raise EmoDetError("--weights needs --gt FOLDER (labels beside images) or --data data.yaml")
    images = sorted(p for p in Path(gt).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    out = args.pred or Path(args.json or args.weights).with_suffix("").parent / f"pred_{Path(args.weights).stem}"
    return Path(gt), write_scoring_predictions(args.weights, images, Path(out), args.imgsz)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.weights:
        args.gt, args.pred = predictions_from_weights(args)
    elif args.gt is None or args.pred is None:
        raise EmoDetError("give --gt and --pred, or --weights with --gt/--data")
    m = evaluate_folders(args.gt, args.pred, args.style, args.names, args.conf, args.interp, args.format)
    print(report_text(m))
    if args.plots:
        for p in write_plots(m, args.plots):
            print(f"plot: {p}")
    m.pop("_data")
    if args.json:
        print(f"json: {write_json(args.json, m)}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
