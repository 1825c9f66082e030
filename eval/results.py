"""The flat results table (timm-style): one row per evaluation in results/<dataset>.csv, fixed columns."""
from __future__ import annotations

import csv
from pathlib import Path

from converters.settings import RESULTS_DIR

COLUMNS = ("model", "split", "tta", "top1", "top2", "macro_f1", "params", "img_size", "train_minutes", "command")


def append_result(dataset: str, row: dict, folder: Path = RESULTS_DIR) -> Path:
    """Add one row (missing columns left empty; unknown keys refused) to results/<dataset>.csv. A row of the same
    model, split and TTA replaces the earlier one: the table says what each model scores now, not how often it
    was measured."""
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown result columns {sorted(unknown)}")
    path = Path(folder) / f"{dataset}.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    new = {k: (f"{v:.4f}" if isinstance(v, float) else v) for k, v in row.items()}
    new = {k: str(new.get(k, "")) for k in COLUMNS}
    key = ("model", "split", "tta")
    rows = list(csv.DictReader(path.open(newline=""))) if path.exists() else []
    rows = [r for r in rows if tuple(r.get(k, "") for k in key) != tuple(new[k] for k in key)] + [new]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path
