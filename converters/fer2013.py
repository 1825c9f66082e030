"""FER2013 (`emotion,pixels,Usage`) and FER+ (`fer2013new.csv` votes) readers, and `make convert-fer2013`.

FER2013 rows carry their 48x48 face as pixels, so each record holds `pixels` and the box is the whole image.
FER+ (Barsoum et al. 2016) gives 10 crowd votes per original FER2013 row, in the original row order.
"""
from __future__ import annotations

import argparse
import csv
import time
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import EmoDetError, run_cli
from .labels import (FER2013_TO_CANONICAL, FERPLUS_TO_CANONICAL, FERPLUS_VOTE_COLUMNS, USAGE_TO_SPLIT,
                     class_names)
from .pipeline import ConvertOptions, convert_split, summary_text
from .records import FaceRecord, Reject
from .settings import DATA_DIR, fer2013_dir
from .writers import finalize_table

SIDE = 48
FERPLUS_MODES = ("majority", "probability", "crossentropy", "multi_target")
UNKNOWN, NOT_FACE = 8, 9  # FER+ vote columns


def _read_csv(path: Path, **kw) -> pd.DataFrame:
    try:
        return pd.read_csv(path, **kw)
    except FileNotFoundError:
        raise EmoDetError(f"{path}: not found") from None
    except (ValueError, pd.errors.ParserError, OSError, EOFError) as exc:
        raise EmoDetError(f"{path}: not a readable CSV ({str(exc).splitlines()[0]})") from None


def original_rows(csv_path: Path, n_rows: int, rows_path: Path | None = None) -> np.ndarray:
    """Original FER2013 row index of each data row: `rows.txt` beside the CSV when present (the shared copy
    lacks 177 rows), else 0..n-1 (a complete fer2013.csv)."""
    rows_path = rows_path or Path(csv_path).with_name("rows.txt")
    if rows_path.exists():
        rows = np.loadtxt(rows_path, dtype=np.int64, ndmin=1)
        if len(rows) != n_rows:
            raise EmoDetError(f"{rows_path}: {len(rows)} lines for {n_rows} rows of {csv_path}")
        return rows
    return np.arange(n_rows, dtype=np.int64)


def read_fer2013(csv_path: Path, rows_path: Path | None = None) -> tuple[dict[str, list[FaceRecord]], list[Reject]]:
    """Records per split (train/val/test from Usage), labels in canonical order; bad rows rejected with reasons."""
    csv_path = Path(csv_path)
    # One data row per physical line, so a reject's line number is the file's: split on \n only (a stray \r
    # inside a field must not make two rows), keep blank lines (reported, not skipped), drop CRLF's \r.
    df = _read_csv(csv_path, dtype=str, keep_default_na=False, lineterminator="\n", skip_blank_lines=False,
                   quoting=csv.QUOTE_NONE)  # FER2013 quotes nothing: a stray " must not join lines
    df.columns = [c.strip() for c in df.columns]
    missing = {"emotion", "pixels", "Usage"} - set(df.columns)
    if missing:
        raise EmoDetError(f"{csv_path}: missing column(s) {sorted(missing)}; expected emotion,pixels,Usage")
    df["Usage"] = df["Usage"].str.rstrip("\r")
    orig = original_rows(csv_path, len(df), rows_path)
    source = csv_path.name
    rejects: list[Reject] = []
    counts = df.pixels.str.count(" ").to_numpy() + 1
    ok = (counts == SIDE * SIDE) & df.pixels.str.fullmatch(r"[0-9 ]+").to_numpy()
    emotion = pd.to_numeric(df.emotion, errors="coerce").to_numpy()
    for i in np.flatnonzero(~ok):
        rejects.append(Reject(source, i + 2, "pixels malformed", f"{counts[i]} values"))
    pixels = np.zeros((len(df), SIDE * SIDE), np.int64)
    if ok.any():
        pixels[ok] = np.fromstring(df.pixels[ok].str.cat(sep=" "), dtype=np.int64, sep=" ").reshape(-1, SIDE * SIDE)
    bad_range = ok & ((pixels < 0) | (pixels > 255)).any(1)
    for i in np.flatnonzero(bad_range):
        rejects.append(Reject(source, i + 2, "pixels out of 0..255"))
    by_split: dict[str, list[FaceRecord]] = {"train": [], "val": [], "test": []}
    for i in np.flatnonzero(ok & ~bad_range):
        usage, code = df.Usage.iat[i], emotion[i]
        if usage not in USAGE_TO_SPLIT:
            rejects.append(Reject(source, i + 2, "unknown Usage", repr(usage)))
            continue
        if code != code or not 0 <= code <= 6:  # FER2013 itself has 7 classes (7 is our contempt extension)
            rejects.append(Reject(source, i + 2, "emotion not in 0..6", repr(df.emotion.iat[i])))
            continue
        by_split[USAGE_TO_SPLIT[usage]].append(FaceRecord(
            image=csv_path, box=(0.0, 0.0, float(SIDE), float(SIDE)), expression=FER2013_TO_CANONICAL[int(code)],
            source=source, row=int(orig[i]), pixels=pixels[i].astype(np.uint8).reshape(SIDE, SIDE),
            face_id=f"f{orig[i]:05d}", image_size=(SIDE, SIDE)))
    return by_split, rejects


def read_ferplus_votes(path: Path) -> pd.DataFrame:
    """`fer2013new.csv` as a frame with Usage, Image name and the 10 vote columns (one row per original row)."""
    df = _read_csv(path, keep_default_na=False)
    missing = set(FERPLUS_VOTE_COLUMNS) - set(df.columns)
    if missing:
        raise EmoDetError(f"{path}: missing FER+ vote column(s) {sorted(missing)}")
    return df


def ferplus_distribution(votes: np.ndarray, mode: str) -> np.ndarray:
    """Per-row target over the 10 FER+ columns, following microsoft/FERPlus `_process_data`.

    Single votes are noise (set to 0). majority: the top emotion if it has more than half of the remaining
    votes. probability/crossentropy: the top (at most 3) emotions until 75 % of the votes are covered, kept
    only if they hold more than half. multi_target: every emotion with at least 30 % of the votes. A row
    that fails its rule becomes 'unknown' (all mass on column 8). Rows sum to 1.
    """
    if mode not in FERPLUS_MODES:
        raise EmoDetError(f"FER+ mode must be one of {', '.join(FERPLUS_MODES)}, not {mode!r}")
    v = np.where(np.asarray(votes, dtype=np.float64) <= 1.0, 0.0, votes).astype(np.float64)
    out = np.zeros_like(v)
    total = v.sum(1)
    for i, (row, s) in enumerate(zip(v, total)):
        kept = np.zeros(10)
        if mode == "majority":
            top = row.argmax()
            if row[top] > 0.5 * s:
                kept[top] = row[top]
        elif mode == "multi_target":
            kept = np.where(row >= 0.3 * s, row, 0.0)
            if kept.sum() <= 0.5 * s:
                kept[:] = 0
        else:
            kept = _probability_votes(row.copy(), s)
        if kept.sum() == 0:
            kept[UNKNOWN] = 1.0
        out[i] = kept / kept.sum()
    return out


def _probability_votes(row: np.ndarray, s: float) -> np.ndarray:
    """FER+ 'probability' rule: take emotions in order of votes (ties together, in column order) until 75 % of
    the votes or 3 emotions are covered; stop at unknown/not-a-face, dropping it if emotions came first."""
    kept, covered, count = np.zeros(10), 0.0, 0
    while covered < 0.75 * s and count < 3:
        peak = row.max()
        stop = False
        for j in np.flatnonzero(row == peak):
            kept[j], row[j] = peak, 0.0
            covered += peak
            count += 1
            if j >= UNKNOWN:
                stop = True
                if kept.sum() > peak:
                    kept[j] = 0.0
                    count -= 1
                break
        if stop:
            break
    if kept.sum() <= 0.5 * s or count > 3:
        return np.zeros(10)
    return kept


def ferplus_labels(votes: np.ndarray, mode: str = "majority", n_classes: int = 8
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(hard canonical label or -1, soft target (N, n_classes) in canonical order, drop reason per row).

    A row is dropped ('' = kept) when its winner is unknown or not-a-face, or contempt in 7-class mode.
    (FERPlus' own reader keeps only winners with index < emotion_count - 2, which with its 8-class table also
    drops fear and contempt; we keep every real emotion, as the paper describes.)
    """
    dist = ferplus_distribution(votes, mode)
    winner = dist.argmax(1)
    canon = np.zeros((len(dist), 8))
    for col, c in FERPLUS_TO_CANONICAL.items():
        canon[:, c] = dist[:, col]
    reason = np.full(len(dist), "", dtype=object)
    reason[winner == UNKNOWN] = "FER+ unknown"
    reason[winner == NOT_FACE] = "FER+ not a face"
    hard = np.array([FERPLUS_TO_CANONICAL.get(int(w), -1) for w in winner])
    if n_classes == 7:
        reason[(hard == 7) & (reason == "")] = "contempt in 7-class mode"
        canon = canon[:, :7]
    mass = canon.sum(1, keepdims=True)
    soft = np.divide(canon, mass, out=np.zeros_like(canon), where=mass > 0)
    hard = np.where(reason == "", hard, -1)
    return hard, soft, reason


def ferplus_records(records_by_split, votes_df: pd.DataFrame, train_mode: str, n_classes: int, source: str
                    ) -> tuple[dict[str, list[FaceRecord]], dict[str, np.ndarray], dict[str, list[Reject]]]:
    """FER2013 records relabelled with FER+ (joined by original row). Train uses `train_mode`; val and test
    always use majority labels (FER+ protocol). Returns records, soft targets and dropped rows, per split."""
    from dataclasses import replace
    votes = votes_df[list(FERPLUS_VOTE_COLUMNS)].to_numpy(dtype=np.float64)
    out, soft_out, rejects = {}, {}, {}
    for split, recs in records_by_split.items():
        rows = np.array([r.row for r in recs], dtype=np.int64)
        if len(rows) and rows.max() >= len(votes):
            raise EmoDetError(f"{source}: has {len(votes)} rows, FER2013 row {rows.max()} has no votes")
        mode = train_mode if split == "train" else "majority"
        hard, soft, reason = ferplus_labels(votes[rows], mode, n_classes) if len(rows) else ([], np.zeros((0, n_classes)), [])
        keep = [i for i in range(len(recs)) if reason[i] == ""]
        rejects[split] = [Reject(source, int(rows[i]) + 2, reason[i]) for i in range(len(recs)) if reason[i]]
        out[split] = [replace(recs[i], expression=int(hard[i])) for i in keep]
        soft_out[split] = soft[keep]
    return out, soft_out, rejects


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m converters.fer2013",
                                description="FER2013 (+ FER+) -> crops, Darknet classifier set, FER2013-style table/HDF5.")
    p.add_argument("--fer2013", type=Path, default=None, help="fer2013.csv(.gz) (default: $EMODET_DATASETS/fer2013)")
    p.add_argument("--ferplus", type=Path, default=None, help="fer2013new.csv (default: beside --fer2013 if present)")
    p.add_argument("--out", type=Path, default=DATA_DIR, help="writes OUT/fer2013 and OUT/ferplus (default: %(default)s)")
    p.add_argument("--sizes", type=int, nargs="+", default=[48], help="crop sizes (64/96 are upscaled)")
    p.add_argument("--classes", type=int, choices=(7, 8), default=7, help="FER+ only: 8 keeps contempt")
    p.add_argument("--mode", choices=FERPLUS_MODES, default="majority", help="FER+ training label mode")
    p.add_argument("--formats", nargs="+", default=["crops", "darknet", "table"], choices=["crops", "darknet", "table"])
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--quiet", action="store_true")
    return p


def convert_fer(args) -> tuple[dict, list[Reject]]:
    """Convert FER2013 (and FER+ when its votes are found); returns ({dataset: [SplitReport]}, reader rejects)."""
    src = args.fer2013 or fer2013_dir() / "fer2013.csv.gz"
    if not Path(src).exists():
        raise EmoDetError(f"{src}: FER2013 not found; pass FER2013=/path/to/fer2013.csv (or set EMODET_DATASETS)")
    plus = args.ferplus or Path(src).with_name("fer2013new.csv")
    extra = {} if args.workers is None else {"workers": args.workers}
    records, rejects = read_fer2013(src)
    reports = {"fer2013": []}
    opts = ConvertOptions(sizes=tuple(args.sizes), n_classes=7, formats=tuple(args.formats),
                          progress=not args.quiet, **extra)
    for split, recs in records.items():
        reports["fer2013"].append(convert_split(recs, split, args.out / "fer2013", opts, (), args.overwrite)[0])
    if "table" in opts.formats:
        finalize_table(args.out / "fer2013", class_names(7))
    if Path(plus).exists():
        relabelled, soft, dropped = ferplus_records(records, read_ferplus_votes(plus), args.mode, args.classes,
                                                    Path(plus).name)
        opts_plus = ConvertOptions(sizes=tuple(args.sizes), n_classes=args.classes, formats=tuple(args.formats),
                                   progress=not args.quiet, **extra)
        reports["ferplus"] = []
        for split, recs in relabelled.items():
            reports["ferplus"].append(convert_split(recs, split, args.out / "ferplus", opts_plus, dropped[split],
                                                    args.overwrite)[0])
            write_soft_targets(args.out / "ferplus" / "soft", split, recs, soft[split], class_names(args.classes),
                               args.mode if split == "train" else "majority")
        if "table" in opts.formats:
            finalize_table(args.out / "ferplus", class_names(args.classes))
    return reports, rejects


def write_soft_targets(folder: Path, split: str, records, soft: np.ndarray, names, mode: str) -> None:
    """FER+ vote distributions beside the hard labels: `<split>.csv` (id + one column per class)."""
    from .io import atomic_write_text
    lines = [f"# FER+ {mode} targets, canonical class order", "id," + ",".join(names)]
    lines += [f"{r.face_id}," + ",".join(f"{p:.4f}" for p in row) for r, row in zip(records, soft)]
    atomic_write_text(Path(folder) / f"{split}.csv", "\n".join(lines) + "\n")


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    t0 = time.perf_counter()
    reports, rejects = convert_fer(args)
    opts = ConvertOptions(sizes=tuple(args.sizes), formats=tuple(args.formats))
    for dataset, reps in reports.items():
        print(f"== {dataset} -> {args.out / dataset}")
        for rep in reps:
            print(summary_text(rep, opts))
    if rejects:
        from collections import Counter
        print(f"FER2013 rows skipped by the reader: {len(rejects)}; first: {rejects[0].line()}")
        for reason, n in Counter(r.reason for r in rejects).most_common():
            print(f"  {n:6d}  {reason}")
    print(f"done in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
