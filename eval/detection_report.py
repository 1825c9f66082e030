"""Detection evaluation from files: ground-truth YOLO labels vs predictions on disk (YOLO+conf files or Darknet
`detector valid` results) -> the metrics of one mAP convention, its text report and plots. The command line is
eval/detection.py."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from converters.errors import EmoDetError
from eval.ap import pr_curve
from eval.detection_io import (DARKNET_JSON, check_class_ids, image_sizes, read_darknet_json, read_darknet_results,
                               read_ground_truth, read_names, read_yolo_predictions)
from eval.detection_metrics import (STYLES, darknet_map_view, darknet_order_counts, detection_confusion,
                                   detection_metrics, rank_predictions)
from eval.plots import plot_confusion, plot_pr_curves


class DetectionMetrics(dict):
    """The metrics of one convention as a dict of JSON values (map50, per_class, ...), plus what the plots need
    (the ranked predictions, class names, style) as an attribute that never reaches JSON."""

    def __init__(self, values: dict, plot_data: tuple):
        super().__init__(values)
        self.plot_data = plot_data

    def to_json(self) -> dict:
        return dict(self)


def load_predictions(pred: Path, fmt: str, names, gt: Path) -> dict[str, np.ndarray]:
    pred = Path(pred)
    if not pred.is_dir():
        raise EmoDetError(f"{pred}: no such predictions folder")
    if fmt == "auto":
        fmt = "darknet-json" if (pred / DARKNET_JSON).exists() else \
            "darknet" if any(pred.glob("comp4_det_test_*.txt")) else "yolo"
    if fmt == "darknet-json":
        return read_darknet_json(pred / DARKNET_JSON, names)
    if fmt == "darknet":
        return read_darknet_results(pred, names, image_sizes(gt))
    return read_yolo_predictions(pred)


def evaluate_folders(gt: Path, pred: Path, style: str = "darknet", names_file: Path | None = None,
                     conf: float = 0.25, interpolation: str | None = None, fmt: str = "auto",
                     map_view: bool = False) -> DetectionMetrics:
    """Metrics dict for ground-truth labels vs predictions on disk (see module doc). `map_view`: score as AlexeyAB's
    `detector map` does: boxes above conf 0.005 after NMS 0.45 (`detector valid` output is cut so; `detector test`
    JSON already is), and TP/FP/FN at `conf` counted in the engine's box order (darknet_order_counts)."""
    if style not in STYLES:
        raise EmoDetError(f"style must be one of {', '.join(STYLES)}")
    chosen = STYLES[style] if interpolation is None else replace(STYLES[style], interpolation=interpolation)
    gts = read_ground_truth(gt)
    if not gts:
        raise EmoDetError(f"{gt}: no ground-truth label files (.txt) to score against")
    names = read_names(names_file, gts)
    check_class_ids(gts, len(names), Path(gt))
    preds = load_predictions(pred, fmt, names, gt)
    unknown = sorted(set(preds) - set(gts))
    if unknown:
        raise EmoDetError(f"{pred}: predictions for {len(unknown)} image(s) without ground truth, e.g. {unknown[0]}")
    check_class_ids(preds, len(names), Path(pred))
    if map_view and not (Path(pred) / DARKNET_JSON).exists():
        preds = darknet_map_view(preds)
    ranked = rank_predictions(gts, preds, len(names), chosen)
    metrics = detection_metrics(gts, preds, names, chosen, conf, ranked=ranked)
    if map_view:
        tp, fp, fn = darknet_order_counts(gts, preds, conf)
        p_, r_ = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
        metrics.update(tp=tp, fp=fp, fn=fn, precision=p_, recall=r_, f1=2 * p_ * r_ / max(p_ + r_, 1e-16),
                       counts="darknet box order")
    metrics["names"] = list(names)
    metrics["confusion"] = detection_confusion(gts, preds, len(names), conf).tolist()
    return DetectionMetrics(metrics, (ranked, names, chosen))


def write_plots(metrics: DetectionMetrics, out: Path) -> list[Path]:
    r, names, style = metrics.plot_data
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
