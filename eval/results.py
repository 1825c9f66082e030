"""The flat results table (timm-style): one row per evaluation in results/<dataset>.csv, fixed columns."""
from __future__ import annotations

import csv
from pathlib import Path

from converters.settings import RESULTS_DIR

COLUMNS = ("model", "split", "tta", "top1", "top2", "macro_f1", "params", "img_size", "train_minutes", "command")


def append_result(dataset: str, row: dict, folder: Path = RESULTS_DIR) -> Path:
    """Append one row (missing columns left empty; unknown keys refused) to results/<dataset>.csv."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown result columns {sorted(unknown)}")
    path = Path(folder) / f"{dataset}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        if new:
            w.writeheader()
        w.writerow({k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()})
    return path
