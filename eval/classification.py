"""Classification metrics as pure functions of scores and labels: top-k, confusion, P/R/F1, per-group."""
from __future__ import annotations

import numpy as np


def topk_accuracy(scores: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Share of rows whose true label is among the k highest scores (ties broken by lower index)."""
    if len(labels) == 0:
        return float("nan")
    k = min(k, scores.shape[1])
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return float((top == np.asarray(labels)[:, None]).any(1).mean())


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Counts, rows = true class, columns = predicted class."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def per_class_prf(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall, F1 and support per class (0 where undefined, as sklearn's zero_division=0)."""
    tp = np.diag(cm).astype(float)
    pred, support = cm.sum(0).astype(float), cm.sum(1).astype(float)
    p = np.divide(tp, pred, out=np.zeros_like(tp), where=pred > 0)
    r = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    f1 = np.divide(2 * p * r, p + r, out=np.zeros_like(tp), where=(p + r) > 0)
    return p, r, f1, support.astype(int)


def classification_metrics(scores: np.ndarray, labels: np.ndarray, names, k: int = 2) -> dict:
    """JSON-ready metrics: top-1, top-k, micro and macro P/R/F1, per-class table, confusion counts."""
    labels = np.asarray(labels, int)
    n = len(names)
    pred = scores.argmax(1) if len(scores) else np.zeros(0, int)
    cm = confusion_matrix(labels, pred, n)
    p, r, f1, support = per_class_prf(cm)
    present = support > 0  # macro averages over classes that occur in the labels (sklearn's default set)
    labelled = present | (cm.sum(0) > 0)
    micro = float(np.trace(cm) / max(cm.sum(), 1))
    return dict(n=int(len(labels)), top1=topk_accuracy(scores, labels, 1), k=k, topk=topk_accuracy(scores, labels, k),
                micro_precision=micro, micro_recall=micro, micro_f1=micro,
                macro_precision=float(p[labelled].mean()) if labelled.any() else 0.0,
                macro_recall=float(r[labelled].mean()) if labelled.any() else 0.0,
                macro_f1=float(f1[labelled].mean()) if labelled.any() else 0.0,
                per_class={name: dict(precision=float(p[i]), recall=float(r[i]), f1=float(f1[i]),
                                      support=int(support[i])) for i, name in enumerate(names)},
                names=list(names), confusion=cm.tolist())


def group_metrics(scores: np.ndarray, labels: np.ndarray, names, groups: dict[str, np.ndarray], k: int = 2) -> dict:
    """The same metrics for each value of each group column (bias evaluation), e.g. {'gender': {'f': {...}}}."""
    out = {}
    for column, values in groups.items():
        out[column] = {}
        for v in sorted(set(values.tolist())):
            sel = values == v
            m = classification_metrics(scores[sel], labels[sel], names, k)
            out[column][str(v)] = {key: m[key] for key in ("n", "top1", "topk", "macro_f1")}
    return out
