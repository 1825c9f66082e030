"""Detection metrics as pure functions: matching, per-class AP at IoU 0.50:0.95, P/R/F1 at a confidence.

Boxes are arrays of (x1, y1, x2, y2) in any consistent unit (IoU does not depend on it). Ground truth per
image: (n, 5) = class, box. Predictions per image: (m, 6) = class, confidence, box.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .ap import average_precision, pr_curve

IOU_THRESHOLDS = np.round(np.linspace(0.5, 0.95, 10), 2)


@dataclass(frozen=True)
class Style:
    """One evaluation convention. Every reported number names the style that produced it."""
    name: str
    interpolation: str  # auc | voc07 | coco101 | ultralytics
    match: str  # voc: best-IoU box of the class, a second claim is a false positive; coco: best unclaimed box
    strict: bool  # IoU > t (Darknet) rather than IoU >= t
    map_over: str  # all: every class in the names file; present: classes with ground truth
    pr_at: str  # conf: P/R/F1 at a fixed confidence; max_f1: at the confidence maximising mean F1


STYLES = {
    "darknet": Style("darknet", "auc", "voc", True, "all", "conf"),
    "ultralytics": Style("ultralytics", "ultralytics", "coco", False, "present", "max_f1"),
    "coco": Style("coco", "coco101", "coco", False, "present", "conf"),
}


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes a (n, 4) and b (m, 4), xyxy."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def greedy_nms(rows: np.ndarray, iou: float) -> np.ndarray:
    """Per-class greedy NMS of one image's predictions (m, 6: class, conf, box): highest confidence first, a box
    whose IoU with a kept box of its class exceeds `iou` is dropped (Darknet's rule, strict >)."""
    rows = np.asarray(rows, float).reshape(-1, 6)
    keep = []
    for c in np.unique(rows[:, 0]):
        idx = np.flatnonzero(rows[:, 0] == c)
        idx = idx[np.argsort(-rows[idx, 1], kind="stable")]
        overlap = iou_matrix(rows[idx, 2:], rows[idx, 2:])
        alive = np.ones(len(idx), bool)
        for i in range(len(idx)):
            if alive[i]:
                alive[i + 1:] &= ~(overlap[i, i + 1:] > iou)
        keep.extend(idx[alive])
    return rows[sorted(keep)]


# `darknet detector valid` keeps conf > 0.001 after NMS 0.6; `detector map` scores conf > 0.005 after NMS 0.45
DARKNET_MAP_CONF, DARKNET_MAP_NMS = 0.005, 0.45


def darknet_map_view(preds: dict, conf: float = DARKNET_MAP_CONF, nms: float = DARKNET_MAP_NMS) -> dict:
    """`detector valid` output as `detector map` would have scored it: confidence above `conf`, then NMS at `nms`.
    (Exact up to boxes that NMS 0.6 already removed; Darknet's own boxes are not clipped to the image.)"""
    out = {}
    for image, rows in preds.items():
        rows = np.asarray(rows, float).reshape(-1, 6)
        out[image] = greedy_nms(rows[rows[:, 1] > conf], nms)
    return out


def _passes(iou, t, strict: bool):
    return iou > t if strict else iou >= t - 1e-12


def match_image(gt: np.ndarray, pred: np.ndarray, style: Style, thresholds=IOU_THRESHOLDS
                ) -> tuple[np.ndarray, np.ndarray]:
    """(hits (m, T) bool, best same-class IoU (m,)) for predictions already sorted by descending confidence."""
    m = len(pred)
    hits = np.zeros((m, len(thresholds)), bool)
    if m == 0:
        return hits, np.zeros(0)
    same = gt[:, 0][None, :] == pred[:, 0][:, None] if len(gt) else np.zeros((m, 0), bool)
    iou = iou_matrix(pred[:, 2:6], gt[:, 1:5]) * same if len(gt) else np.zeros((m, 0))
    best_iou = iou.max(1) if iou.shape[1] else np.zeros(m)
    for k, t in enumerate(thresholds):
        claimed = np.zeros(iou.shape[1], bool)
        for i in range(m):
            if not iou.shape[1]:
                break
            if style.match == "voc":
                j = int(iou[i].argmax())
                if same[i, j] and _passes(iou[i, j], t, style.strict) and not claimed[j]:
                    hits[i, k] = claimed[j] = True
            else:
                cand = np.where(claimed | ~same[i], -1.0, iou[i])
                j = int(cand.argmax())
                if cand[j] >= 0 and _passes(cand[j], t, style.strict):
                    hits[i, k] = claimed[j] = True
    return hits, best_iou


@dataclass
class Ranked:
    """All predictions of a set, ranked by confidence, with their hits; plus ground-truth counts per class."""
    cls: np.ndarray
    conf: np.ndarray
    hits: np.ndarray  # (N, T)
    best_iou: np.ndarray
    n_gt: np.ndarray  # per class


def rank_predictions(gts: dict, preds: dict, n_classes: int, style: Style, max_det: int | None = None) -> Ranked:
    cls, conf, hits, ious = [], [], [], []
    n_gt = np.zeros(n_classes, int)
    for image in sorted(set(gts) | set(preds)):
        g = np.asarray(gts.get(image, np.zeros((0, 5))), float).reshape(-1, 5)
        p = np.asarray(preds.get(image, np.zeros((0, 6))), float).reshape(-1, 6)
        p = p[np.argsort(-p[:, 1], kind="mergesort")][:max_det]
        n_gt += np.bincount(g[:, 0].astype(int), minlength=n_classes)[:n_classes]
        h, b = match_image(g, p, style)
        cls.append(p[:, 0].astype(int)), conf.append(p[:, 1]), hits.append(h), ious.append(b)
    order = np.argsort(-np.concatenate(conf), kind="mergesort") if conf else np.zeros(0, int)
    return Ranked(np.concatenate(cls)[order], np.concatenate(conf)[order], np.concatenate(hits)[order],
                  np.concatenate(ious)[order], n_gt)


def ap_table(r: Ranked, interpolation: str) -> np.ndarray:
    """AP per class (rows) and IoU threshold (columns)."""
    n_classes = len(r.n_gt)
    ap = np.zeros((n_classes, r.hits.shape[1]))
    for c in range(n_classes):
        sel = r.cls == c
        for k in range(r.hits.shape[1]):
            ap[c, k] = average_precision(r.hits[sel, k], int(r.n_gt[c]), interpolation)
    return ap


def counts_at(r: Ranked, conf: float, cls: int | None = None) -> tuple[int, int, int]:
    """TP, FP, FN at IoU 0.5 for predictions with confidence >= conf (one class, or all)."""
    sel = r.conf >= conf
    n_gt = int(r.n_gt.sum())
    if cls is not None:
        sel &= r.cls == cls
        n_gt = int(r.n_gt[cls])
    tp = int(r.hits[sel, 0].sum())
    return tp, int(sel.sum()) - tp, n_gt - tp


def darknet_order_counts(gts: dict, preds: dict, conf: float = 0.25, iou: float = 0.5) -> tuple[int, int, int]:
    """TP, FP, FN at `conf` counted as AlexeyAB's `detector map` counts them: each box of an image, in the engine's
    order, takes the ground-truth box of its class it overlaps most (IoU > iou); above `conf` it is a TP unless an
    earlier box of that image, whatever its confidence, took the same face first. (Our own counting lets the more
    confident box win; the two differ only where boxes below `conf` come first.)"""
    tp = fp = 0
    n_gt = sum(len(g) for g in gts.values())
    for image, rows in preds.items():
        rows = np.asarray(rows, float).reshape(-1, 6)
        gt = np.asarray(gts.get(image, np.zeros((0, 5))), float).reshape(-1, 5)
        overlap = iou_matrix(rows[:, 2:], gt[:, 1:]) if len(gt) else np.zeros((len(rows), 0))
        taken = set()
        for k, (c, s) in enumerate(rows[:, :2]):
            same = np.flatnonzero(gt[:, 0] == c) if len(gt) else np.zeros(0, int)
            best = same[np.argmax(overlap[k, same])] if len(same) else -1
            face = int(best) if best >= 0 and overlap[k, best] > iou else -1
            if s > conf:
                if face >= 0 and face not in taken:
                    tp += 1
                else:
                    fp += 1
            taken.add(face)
    return tp, fp, n_gt - tp


def _smooth(y: np.ndarray, fraction: float = 0.1) -> np.ndarray:
    """Box filter as Ultralytics applies to the mean F1 curve before taking its maximum."""
    nf = round(len(y) * fraction * 2) // 2 + 1
    pad = np.ones(nf // 2)
    return np.convolve(np.concatenate((pad * y[0], y, pad * y[-1])), np.ones(nf) / nf, mode="valid")


def max_f1_confidence(r: Ranked, classes: list[int]) -> tuple[float, np.ndarray, np.ndarray]:
    """Ultralytics' operating point: the confidence (on a 1000-step grid) maximising the smoothed mean F1 over
    classes, and per-class precision and recall there."""
    x = np.linspace(0, 1, 1000)
    p_curve, r_curve = np.zeros((len(classes), 1000)), np.zeros((len(classes), 1000))
    for i, c in enumerate(classes):
        sel = r.cls == c
        if not sel.any() or r.n_gt[c] == 0:
            continue
        recall, precision = pr_curve(r.hits[sel, 0], int(r.n_gt[c]))
        r_curve[i] = np.interp(-x, -r.conf[sel], recall, left=0)
        p_curve[i] = np.interp(-x, -r.conf[sel], precision, left=1)
    f1 = 2 * p_curve * r_curve / (p_curve + r_curve + 1e-16)
    k = int(_smooth(f1.mean(0)).argmax()) if classes else 0
    return float(x[k]), p_curve[:, k], r_curve[:, k]


def detection_metrics(gts: dict, preds: dict, names, style: Style, conf: float = 0.25, max_det: int | None = None,
                      ranked: Ranked | None = None) -> dict:
    """Every headline number for one style, as a JSON-ready dict (`ranked`: the matching already done by
    `rank_predictions` for the same data and style, so callers that plot curves match only once)."""
    n = len(names)
    r = ranked if ranked is not None else rank_predictions(gts, preds, n, style, max_det)
    ap = ap_table(r, style.interpolation)
    present = [c for c in range(n) if r.n_gt[c] > 0]
    counted = list(range(n)) if style.map_over == "all" else present
    mean = (lambda v: float(np.mean(v)) if len(v) else 0.0)
    out = dict(style=style.name, interpolation=style.interpolation, match=style.match,
               iou_rule="IoU > t" if style.strict else "IoU >= t", map_over=style.map_over,
               n_images=len(set(gts) | set(preds)), n_gt=int(r.n_gt.sum()), n_pred=int(len(r.conf)),
               map50=mean(ap[counted, 0]), map75=mean(ap[counted, 5]), map50_95=mean(ap[counted].mean(1)))
    if style.pr_at == "max_f1":
        conf_used, p_cls, r_cls = max_f1_confidence(r, present)
        precision, recall = mean(p_cls), mean(r_cls)
    else:
        conf_used = conf
        tp, fp, fn = counts_at(r, conf)
        precision, recall = tp / max(tp + fp, 1), tp / max(tp + fn, 1)
    tp, fp, fn = counts_at(r, conf_used)
    above = r.conf >= conf_used
    # Darknet's "average IoU": best same-class IoU of each detection above the threshold when it passes 0.5,
    # averaged over all those detections.
    ious = np.where(_passes(r.best_iou[above], 0.5, style.strict), r.best_iou[above], 0.0)
    out.update(conf=conf_used, pr_at=style.pr_at, precision=precision, recall=recall,
               f1=2 * precision * recall / max(precision + recall, 1e-16), tp=tp, fp=fp, fn=fn,
               avg_iou=float(ious.mean()) if ious.size else 0.0)
    per = {}
    for c, name in enumerate(names):
        ctp, cfp, cfn = counts_at(r, conf_used, c)
        per[name] = dict(ap50=float(ap[c, 0]), ap50_95=float(ap[c].mean()), n_gt=int(r.n_gt[c]),
                         n_pred=int((r.cls == c).sum()), tp=ctp, fp=cfp, fn=cfn,
                         precision=ctp / max(ctp + cfp, 1), recall=ctp / max(ctp + cfn, 1), counted=c in counted)
    out["per_class"] = per
    out["agnostic_recall50"] = agnostic_recall(gts, preds, conf_used, style)
    return out


def agnostic_recall(gts: dict, preds: dict, conf: float, style: Style) -> float:
    """Class-agnostic recall at IoU 0.5: how many faces were found at all, whatever the emotion."""
    def strip(d, width):
        return {k: np.c_[np.zeros(len(v)), np.asarray(v, float).reshape(-1, width)[:, 1:]] for k, v in d.items()}
    g = strip(gts, 5)
    p = {k: v[v[:, 1] >= conf] for k, v in strip(preds, 6).items()}
    r = rank_predictions(g, p, 1, style)
    return float(r.hits[:, 0].sum() / r.n_gt.sum()) if r.n_gt.sum() else 0.0


def _confident_overlaps(gts: dict, preds: dict, image: str, conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ground truth (n, 5), predictions at >= conf (m, 6), their (n, m) IoU) of one image; either may be absent."""
    g = np.asarray(gts.get(image, np.zeros((0, 5))), float).reshape(-1, 5)
    p = np.asarray(preds.get(image, np.zeros((0, 6))), float).reshape(-1, 6)
    p = p[p[:, 1] >= conf]
    return g, p, iou_matrix(g[:, 1:5], p[:, 2:6]) if len(g) and len(p) else np.zeros((len(g), len(p)))


def detection_confusion(gts: dict, preds: dict, n_classes: int, conf: float = 0.25, iou: float = 0.45) -> np.ndarray:
    """(n+1, n+1) counts: rows true class (last = background: false detections), columns predicted class
    (last = background: missed faces). Class-agnostic greedy matching by IoU, as Ultralytics' matrix."""
    cm = np.zeros((n_classes + 1, n_classes + 1), int)
    for image in set(gts) | set(preds):
        g, p, m = _confident_overlaps(gts, preds, image, conf)
        pairs = sorted(((m[i, j], i, j) for i in range(len(g)) for j in range(len(p)) if m[i, j] >= iou), reverse=True)
        used_g, used_p = set(), set()
        for _, i, j in pairs:
            if i not in used_g and j not in used_p:
                used_g.add(i), used_p.add(j)
                cm[int(g[i, 0]), int(p[j, 0])] += 1
        for i in set(range(len(g))) - used_g:
            cm[int(g[i, 0]), n_classes] += 1
        for j in set(range(len(p))) - used_p:
            cm[n_classes, int(p[j, 0])] += 1
    return cm


def by_face_size(gts: dict, preds: dict, pixels_per_width: dict, edges, conf: float = 0.25,
                 iou: float = 0.5) -> list[dict]:
    """Per face-size bin (box width in pixels of what the model saw: normalised width x `pixels_per_width[image]`,
    bins [edges[i], edges[i+1])): faces, `found` (share with a detection of any class at >= conf and IoU >= iou)
    and `correct` (share whose best-scoring such detection has the true class; a missed face is not correct).
    Why: mAP hides whether emotion fails on small faces or large ones, and the fix differs."""
    sizes, found, correct = [], [], []
    for image in gts:
        g, p, m = _confident_overlaps(gts, preds, image, conf)
        for i in range(len(g)):
            near = np.nonzero(m[i] >= iou)[0]
            sizes.append((g[i, 3] - g[i, 1]) * pixels_per_width[image])
            found.append(len(near) > 0)
            correct.append(len(near) > 0 and p[near[np.argmax(p[near, 1])], 0] == g[i, 0])
    sizes, found, correct = np.array(sizes), np.array(found, bool), np.array(correct, bool)
    rows = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        sel = (sizes >= lo) & (sizes < hi)
        n = int(sel.sum())
        rows.append(dict(lo=float(lo), hi=float(hi), faces=n, found=float(found[sel].mean()) if n else 0.0,
                         correct=float(correct[sel].mean()) if n else 0.0))
    return rows
