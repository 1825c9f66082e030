"""Likely label errors and ambiguous faces, ranked, from out-of-fold probabilities (confident learning, cleanlab).

  python -m eval.label_issues --oof runs/kfold/fer2013-vggs-teacher-k5/oof.npz [--table T.h5] [--truth FERPLUS.h5]

Every row of the folded split gets a score (1 - the cleanlab label quality: higher = more likely wrong) and a flag
(cleanlab's confident-learning filter, `prune_by_noise_rate`: the rows it estimates to be mislabelled, as many as
its estimated noise matrix says there are). Written: label_issues.csv (rank, id, given and predicted class, score,
flag), label_issues.jpg (contact sheet of the top-ranked faces, `given -> predicted`) and label_issues.json.

Known answer (--truth): a second labelling of the same faces by id, e.g. FER+ (ten votes per face, majority) for
FER2013. Rows whose given label differs from that majority are the "noisy" truth; reported: the precision and
recall of the flags, the ROC AUC of each score, and the same for the plain baseline, the lowest self-confidence
(1 - the out-of-fold probability of the given label) cut at the same number of rows.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from converters.errors import EmoDetError, run_cli
from converters.labels import SPLIT_TO_USAGE, class_names

# cleanlab's label-quality scores compared here; `self_confidence` is the plain baseline
SCORE_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")


def load_oof(path: Path) -> dict:
    try:
        z = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise EmoDetError(f"{path}: no out-of-fold probabilities (make kfold writes oof.npz)") from None
    probs, labels = z["probs"].astype(np.float64), z["labels"].astype(np.int64)
    if np.isnan(probs).any():
        raise EmoDetError(f"{path}: some rows have no out-of-fold probability (an unfinished k-fold run?)")
    return dict(probs=probs, labels=labels, ids=z["ids"].astype(str), fold=z["fold"])


def _compact(probs: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """cleanlab wants classes 0..K-1 all present: the probabilities of the classes that occur, renormalised."""
    present = np.unique(labels)
    p = probs[:, present]
    p = p / p.sum(1, keepdims=True)
    return p, np.searchsorted(present, labels), present


def issue_scores(probs: np.ndarray, labels: np.ndarray) -> dict[str, np.ndarray]:
    """Per method, a score per row: higher = more likely mislabelled (1 - cleanlab's label quality)."""
    from cleanlab.rank import get_label_quality_scores
    p, y, _ = _compact(probs, labels)
    return {m: 1.0 - get_label_quality_scores(y, p, method=m) for m in SCORE_METHODS}


def issue_flags(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """cleanlab's confident-learning filter: True for the rows it finds mislabelled."""
    from cleanlab.filter import find_label_issues
    p, y, _ = _compact(probs, labels)
    return find_label_issues(y, p, filter_by="prune_by_noise_rate")


def precision_recall(chosen: np.ndarray, noisy: np.ndarray) -> dict:
    tp = int((chosen & noisy).sum())
    return dict(n=int(chosen.sum()), precision=tp / max(int(chosen.sum()), 1), recall=tp / max(int(noisy.sum()), 1))


def known_answer(scores: dict[str, np.ndarray], flags: np.ndarray, noisy: np.ndarray) -> dict:
    """How well flags and scores find the `noisy` rows: P/R of the flags and of the baseline (lowest
    self-confidence, as many rows), ROC AUC of every score."""
    from sklearn.metrics import roc_auc_score
    baseline = np.zeros(len(noisy), bool)
    baseline[np.argsort(-scores["self_confidence"], kind="stable")[:int(flags.sum())]] = True
    return dict(n=int(len(noisy)), noisy=int(noisy.sum()), noisy_rate=float(noisy.mean()),
                flags=precision_recall(flags, noisy), baseline_same_count=precision_recall(baseline, noisy),
                auc={m: float(roc_auc_score(noisy, s)) if 0 < noisy.sum() < len(noisy) else None
                     for m, s in scores.items()})


def second_labels(truth: Path, ids: np.ndarray, split: str = "train") -> np.ndarray:
    """Per id, the label another table gives the same face (-1 where it has none: e.g. no FER+ majority)."""
    import h5py
    usage = SPLIT_TO_USAGE[split]
    with h5py.File(truth, "r") as h5:
        other = dict(zip((i.decode() for i in h5[f"{usage}_id"][:]), h5[f"{usage}_label"][:].astype(int)))
    return np.array([other.get(i, -1) for i in ids])


def table_faces(table: Path, ids: np.ndarray, split: str = "train") -> np.ndarray:
    import h5py
    usage = SPLIT_TO_USAGE[split]
    with h5py.File(table, "r") as h5:
        where = {i.decode(): k for k, i in enumerate(h5[f"{usage}_id"][:])}
        rows = [where[i] for i in ids]
        order = np.argsort(rows)
        faces = h5[f"{usage}_pixel"][np.array(rows)[order]]
    out = np.empty_like(faces)
    out[order] = faces
    side = int(round(np.sqrt(out.shape[1])))
    return out.reshape(-1, side, side)


def write_outputs(oof: dict, scores: dict, flags: np.ndarray, out: Path, table: Path | None, top: int = 48) -> dict:
    """label_issues.csv (every row, most suspect first) and, with the table, the contact sheet of the top `top`."""
    import csv
    from converters.writers import table_names
    names = (table_names(table) if table else None) or class_names(8 if oof["probs"].shape[1] > 7 else 7)
    score = scores["self_confidence"]
    order = np.argsort(-score, kind="stable")
    pred = oof["probs"].argmax(1)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "label_issues.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["rank", "id", "label", "predicted", "p_label", "p_predicted", "score", *SCORE_METHODS[1:],
                    "flagged"])
        for rank, i in enumerate(order, start=1):
            w.writerow([rank, oof["ids"][i], names[oof["labels"][i]], names[pred[i]],
                        f"{oof['probs'][i, oof['labels'][i]]:.4f}", f"{oof['probs'][i, pred[i]]:.4f}", f"{score[i]:.4f}",
                        *(f"{scores[m][i]:.4f}" for m in SCORE_METHODS[1:]), int(flags[i])])
    written = dict(csv=str(out / "label_issues.csv"))
    if table is not None:
        import cv2
        from eval.plots import contact_sheet
        chosen = order[:top]
        faces = table_faces(table, oof["ids"][chosen])
        captions = [f"{oof['ids'][i]} {names[oof['labels'][i]]}->{names[pred[i]]}" for i in chosen]
        sheet = contact_sheet([cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) for f in faces], 120, 8, captions)
        cv2.imwrite(str(out / "label_issues.jpg"), sheet)
        written["contact_sheet"] = str(out / "label_issues.jpg")
    return written


def write_filtered_table(table: Path, drop_ids: set[str], out: Path) -> dict:
    """A copy of `table` whose train split lacks the rows in `drop_ids`; the other splits untouched (they are
    selected and scored on as they are). Returns the counts."""
    import h5py
    from converters.labels import USAGE_TO_SPLIT
    from converters.writers import table_names, write_h5
    splits = {}
    with h5py.File(table, "r") as h5:
        for usage, split in USAGE_TO_SPLIT.items():
            if f"{usage}_pixel" not in h5:
                continue
            ids = [i.decode() for i in h5[f"{usage}_id"][:]]
            keep = np.array([split != "train" or i not in drop_ids for i in ids])
            splits[split] = (h5[f"{usage}_pixel"][:][keep], h5[f"{usage}_label"][:][keep],
                             [i for i, k in zip(ids, keep) if k])
    out.parent.mkdir(parents=True, exist_ok=True)
    write_h5(out, splits, table_names(table) or class_names(7))
    return {split: len(v[1]) for split, v in splits.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m eval.label_issues", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--oof", type=Path, required=True, help="out-of-fold probabilities (make kfold's oof.npz)")
    p.add_argument("--table", type=Path, default=None, help="the folded table, for the contact sheet")
    p.add_argument("--truth", type=Path, default=None,
                   help="a second labelling of the same ids (e.g. data/ferplus/table/fer2013.h5) to score against")
    p.add_argument("--out", type=Path, default=None, help="default: beside --oof")
    p.add_argument("--top", type=int, default=48, help="faces on the contact sheet")
    p.add_argument("--filtered", type=Path, default=None, metavar="OUT.h5",
                   help="also write --table without the flagged train rows (to train on; other splits untouched)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    oof = load_oof(args.oof)
    scores = issue_scores(oof["probs"], oof["labels"])
    flags = issue_flags(oof["probs"], oof["labels"])
    out = args.out or args.oof.parent
    report = dict(oof=str(args.oof), rows=int(len(flags)), flagged=int(flags.sum()),
                  files=write_outputs(oof, scores, flags, out, args.table, args.top))
    print(f"{len(flags)} rows, {int(flags.sum())} flagged by confident learning ({flags.mean():.1%}); "
          f"ranked list {report['files']['csv']}")
    if args.truth:
        other = second_labels(args.truth, oof["ids"])
        known = other >= 0
        noisy = other[known] != oof["labels"][known]
        k = known_answer({m: s[known] for m, s in scores.items()}, flags[known], noisy)
        report["known_answer"] = dict(k, truth=str(args.truth), rows_without_second_label=int((~known).sum()))
        f, b = k["flags"], k["baseline_same_count"]
        print(f"against {args.truth} ({k['n']} rows with a second label, {k['noisy']} disagree, {k['noisy_rate']:.1%}):")
        print(f"  confident-learning flags: {f['n']} rows, precision {f['precision']:.3f}, recall {f['recall']:.3f}")
        print(f"  baseline, lowest self-confidence, same count: precision {b['precision']:.3f}, recall {b['recall']:.3f}")
        print("  ROC AUC of the scores: " + ", ".join(f"{m} {a:.3f}" if a is not None else f"{m} -"
                                                    for m, a in k["auc"].items()))
    if args.filtered:
        if args.table is None:
            raise EmoDetError("--filtered needs --table (the table the flags refer to)")
        counts = write_filtered_table(args.table, set(oof["ids"][flags]), args.filtered)
        report["filtered"] = dict(path=str(args.filtered), **counts)
        print(f"wrote {args.filtered}: {counts.get('train')} train rows kept of {len(flags)}")
    (out / "label_issues.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
