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
    added = {k: (f"{row[k]:.4f}" if isinstance(row[k], float) else str(row[k])) if k in row else "" for k in COLUMNS}
    key = ("model", "split", "tta")
    rows = []
    if path.exists():
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    rows = [r for r in rows if tuple(r.get(k, "") for k in key) != tuple(added[k] for k in key)] + [added]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=COLUMNS)
        w.writeheader()
        w.writerows(rows)
    return path
