"""Plots for reports: PR curves, confusion matrices, loss curves (matplotlib, no display needed)."""
from __future__ import annotations

import math

from pathlib import Path

import numpy as np


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def plot_confusion(cm: np.ndarray, labels, path: Path, title: str, normalise: bool = True) -> Path:
    """Confusion matrix PNG (rows = true, columns = predicted), row-normalised by default, counts annotated."""
    plt = _plt()
    cm = np.asarray(cm, float)
    shown = cm / np.maximum(cm.sum(1, keepdims=True), 1) if normalise else cm
    size = 1.0 + 0.6 * len(labels)
    fig, ax = plt.subplots(figsize=(size + 1.5, size))
    im = ax.imshow(shown, cmap="Blues", vmin=0, vmax=1 if normalise else None)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            text = f"{shown[i, j]:.2f}" if normalise else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="white" if shown[i, j] > 0.6 * (shown.max() or 1) else "black")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_pr_curves(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], path: Path, title: str) -> Path:
    """Precision-recall curve per class; `curves` maps name -> (recall, precision, AP)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    for name, (rec, prec, ap) in curves.items():
        ax.plot(np.r_[0, rec], np.r_[1, prec], label=f"{name} {ap:.3f}")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(title)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_lines(series: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, title: str, xlabel: str,
               ylabel: str, right: dict[str, tuple[np.ndarray, np.ndarray]] | None = None,
               right_label: str = "") -> Path:
    """Line plot; `right` series (e.g. accuracy beside a loss) go on a second y axis, drawn as marked lines."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, (x, y) in series.items():
        ax.plot(x, y, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    handles, labels = ax.get_legend_handles_labels()
    if right:
        ax2 = ax.twinx()
        for i, (name, (x, y)) in enumerate(right.items()):
            ax2.plot(x, y, "o-", color=f"C{len(series) + i}", label=name)
        ax2.set_ylabel(right_label)
        ax2.set_ylim(0, 1)
        h2, l2 = ax2.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def annotated_image(image: np.ndarray, boxes: np.ndarray, names, colours=None) -> np.ndarray:
    """Copy of a BGR image with `boxes` (n, 6: class, conf, x1, y1, x2, y2 in normalised units) drawn and
    labelled `name conf`."""
    import cv2
    out = image.copy()
    h, w = out.shape[:2]
    palette = colours or [(56, 56, 255), (151, 157, 255), (31, 112, 255), (29, 178, 255), (49, 210, 207),
                          (10, 249, 72), (23, 204, 146), (134, 219, 61)]
    for c, conf, x1, y1, x2, y2 in np.asarray(boxes, float).reshape(-1, 6):
        colour = palette[int(c) % len(palette)]
        p1, p2 = (int(x1 * w), int(y1 * h)), (int(x2 * w), int(y2 * h))
        cv2.rectangle(out, p1, p2, colour, 2)
        label = f"{names[int(c)]} {conf:.2f}"
        (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        cv2.rectangle(out, (p1[0], max(0, p1[1] - th - 4)), (p1[0] + tw + 2, p1[1]), colour, -1)
        cv2.putText(out, label, (p1[0] + 1, max(th, p1[1] - 3)), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1,
                    cv2.LINE_AA)
    return out


def contact_sheet(images: list[np.ndarray], thumb: int = 240, columns: int | None = None,
                  captions: list[str] | None = None) -> np.ndarray:
    """One BGR picture of `images` side by side: each fitted into a thumb x thumb cell (aspect kept, grey border),
    `columns` per row (default: about square), an optional caption under each."""
    import cv2
    if not images:
        raise ValueError("no images for a contact sheet")
    cols = columns or max(1, math.ceil(math.sqrt(len(images))))
    rows = math.ceil(len(images) / cols)
    cap_h = 18 if captions else 0
    sheet = np.full((rows * (thumb + cap_h), cols * thumb, 3), 40, np.uint8)
    for k, img in enumerate(images):
        h, w = img.shape[:2]
        g = min((thumb - 4) / h, (thumb - 4) / w)
        small = cv2.resize(img, (max(1, round(w * g)), max(1, round(h * g))), interpolation=cv2.INTER_AREA)
        r, c = divmod(k, cols)
        y0 = r * (thumb + cap_h) + (thumb - small.shape[0]) // 2
        x0 = c * thumb + (thumb - small.shape[1]) // 2
        sheet[y0:y0 + small.shape[0], x0:x0 + small.shape[1]] = small if small.ndim == 3 else small[..., None]
        if captions:
            cv2.putText(sheet, fitted_caption(captions[k], thumb - 8),
                        (c * thumb + 4, r * (thumb + cap_h) + thumb + 13),
                        cv2.FONT_HERSHEY_SIMPLEX, CAPTION_SCALE, (230, 230, 230), 1, cv2.LINE_AA)
    return sheet


CAPTION_SCALE = 0.4  # OpenCV's simplex font at this scale: about 7 px a character


def fitted_caption(text: str, width: int) -> str:
    """`text` as drawn in `width` pixels: whole if it fits, else its start and end around an ellipsis (a photo's
    name differs at its end as often as at its start, e.g. a camera's counter before the extension)."""
    import cv2

    def fits(t: str) -> bool:
        return cv2.getTextSize(t, cv2.FONT_HERSHEY_SIMPLEX, CAPTION_SCALE, 1)[0][0] <= width
    if fits(text):
        return text
    keep = len(text)
    while keep > 2 and not fits(f"{text[:keep - keep // 2]}..{text[len(text) - keep // 2:]}"):
        keep -= 1
    return f"{text[:keep - keep // 2]}..{text[len(text) - keep // 2:]}"


def plot_folds(per_fold: list[dict], names: dict, path: Path, title: str) -> Path:
    """k-fold results in one figure: each class's held-out recall per fold (dots) and its mean (bar), then
    top-1 and macro F1 the same way."""
    plt = _plt()
    keys = list(names) + ["top1", "macro_f1"]
    labels = [names[c] for c in names] + ["top-1", "macro F1"]

    def value(m, key):
        v = m["recall"].get(key) if key in names else m[key]
        return np.nan if v is None else v
    values = np.array([[value(m, key) for key in keys] for m in per_fold], float)
    fig, ax = plt.subplots(figsize=(8, 4))
    x = np.arange(len(keys))
    ax.bar(x, np.nanmean(values, 0), color=["C0"] * len(names) + ["C1", "C1"], alpha=0.5)
    for i, row in enumerate(values):
        ax.plot(x + (i - (len(values) - 1) / 2) * 0.08, row, "o", ms=3, color="k")
    ax.set_xticks(x, labels, rotation=30, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("held-out fold (dots), mean (bars)")
    ax.set_title(title)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)
