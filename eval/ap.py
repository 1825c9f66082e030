"""Average precision from a ranked list of hits: every interpolation in common use (shared/ENGINES.md).

All functions take `tp` (1/0 per detection, sorted by descending confidence) and the number of ground-truth
boxes, or the recall/precision arrays derived from them.
"""
from __future__ import annotations

import numpy as np

INTERPOLATIONS = ("auc", "voc07", "coco101", "ultralytics")


def pr_curve(tp: np.ndarray, n_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Recall and precision after each detection (detections sorted by descending confidence)."""
    tp = np.asarray(tp, dtype=np.float64)
    tpc = np.cumsum(tp)
    fpc = np.cumsum(1.0 - tp)
    recall = tpc / n_gt if n_gt else np.zeros_like(tpc)
    precision = tpc / np.maximum(tpc + fpc, 1e-12)
    return recall, precision


def ap_auc(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point area under the precision envelope (VOC2010+, Darknet's default since 2019)."""
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    step = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[step + 1] - mrec[step]) * mpre[step + 1]))


def ap_voc07(recall: np.ndarray, precision: np.ndarray) -> float:
    """11-point: mean over t = 0, 0.1, ..., 1 of the best precision at recall >= t (VOC2007, `-points 11`)."""
    total = 0.0
    for t in np.linspace(0, 1, 11):
        at = precision[recall >= t - 1e-12]
        total += at.max() if at.size else 0.0
    return total / 11


def ap_coco101(recall: np.ndarray, precision: np.ndarray) -> float:
    """pycocotools: the envelope sampled at 101 recall steps (first point whose recall reaches each step)."""
    if recall.size == 0:
        return 0.0
    env = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.linspace(0, 1, 101)
    idx = np.searchsorted(recall, steps, side="left")
    return float(np.where(idx < len(env), env[np.minimum(idx, len(env) - 1)], 0.0).mean())


def ap_ultralytics(recall: np.ndarray, precision: np.ndarray) -> float:
    """Ultralytics 8.4: envelope with end sentinels (recall held at its last value with precision 0), sampled
    by linear interpolation at 101 points and integrated with the trapezoid rule."""
    last = recall[-1] if recall.size else 1.0
    mrec = np.concatenate(([0.0], recall, [last], [1.0]))
    mpre = np.concatenate(([1.0], precision, [0.0], [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    x = np.linspace(0, 1, 101)
    return float(np.trapezoid(np.interp(x, mrec, mpre), x))


_AP = {"auc": ap_auc, "voc07": ap_voc07, "coco101": ap_coco101, "ultralytics": ap_ultralytics}


def average_precision(tp: np.ndarray, n_gt: int, interpolation: str = "auc") -> float:
    """AP of one class; 0 when it has no ground truth or no detections (callers decide whether it counts)."""
    if interpolation not in _AP:
        raise ValueError(f"interpolation must be one of {INTERPOLATIONS}, not {interpolation!r}")
    if n_gt == 0 or len(tp) == 0:
        return 0.0
    recall, precision = pr_curve(tp, n_gt)
    return _AP[interpolation](recall, precision)
