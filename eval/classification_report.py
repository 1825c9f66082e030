"""Classifier evaluation reports: the text summary and the confusion matrix as CSV and PNG, from a metrics dict of
eval.classification. The command line is eval/confusion.py."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from converters.labels import SPLIT_TO_USAGE
from eval.plots import plot_confusion


def report_text(m: dict) -> str:
    lines = [f"{SPLIT_TO_USAGE[m['split']]}/{m['split']} ({m['n']} faces, {m['backend']} {Path(m['weights']).name}, TTA {m['tta']}): "
             f"top-1 {m['top1']:.4f}  top-{m['k']} {m['topk']:.4f}  macro F1 {m['macro_f1']:.4f}  "
             f"macro P {m['macro_precision']:.4f}  macro R {m['macro_recall']:.4f}",
             f"{'class':10s} {'P':>6s} {'R':>6s} {'F1':>6s} {'support':>8s}"]
    for name, c in m["per_class"].items():
        lines.append(f"{name:10s} {c['precision']:6.3f} {c['recall']:6.3f} {c['f1']:6.3f} {c['support']:8d}")
    for column, by_value in m.get("groups", {}).items():
        for value, g in by_value.items():
            lines.append(f"group {column}={value}: n {g['n']}  top-1 {g['top1']:.4f}  macro F1 {g['macro_f1']:.4f}")
    return "\n".join(lines)


def write_outputs(m: dict, out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    cm = np.array(m["confusion"])
    stem = f"confusion_{m['split']}"
    csv_path = out / f"{stem}.csv"
    csv_path.write_text("true\\pred," + ",".join(m["names"]) + "\n" +
                        "".join(f"{n}," + ",".join(map(str, row)) + "\n" for n, row in zip(m["names"], cm)))
    title = f"{SPLIT_TO_USAGE[m['split']]}: top-1 {m['top1']:.2%} (TTA {m['tta']})"
    return [csv_path, plot_confusion(cm, m["names"], out / f"{stem}.png", title)]
