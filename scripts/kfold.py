"""`make kfold K=5`: k-fold training and evaluation of a FER classifier recipe.

The train split of a table (default: FER2013's Training faces) is cut into K folds, stratified by class and seeded
(identity-disjoint with --groups, a CSV `id,group` naming each row's person). K classifiers are trained with a
classify recipe (cfg/recipes/*.yaml, the torch trainer), each on K-1 folds; its held-out fold is the trainer's
validation split, and the model of its *last* epoch (never one selected on the held-out fold) predicts those rows.
Out, in runs/kfold/<recipe>-k<K>/: per-fold and mean +- std top-1, macro F1 and per-class recall (metrics.json and
the printed table), kfold.png, and the out-of-fold probabilities of every row (oof.npz) that
`python -m eval.label_issues` ranks for likely label errors.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from converters.balance import fold_of_rows
from converters.errors import EmoDetError, run_cli
from converters.labels import SPLIT_TO_USAGE
from converters.settings import CFG_DIR, FER2013_TABLE, RUNS_DIR

DEFAULT_RECIPE = CFG_DIR / "recipes" / "fer2013-tiny.yaml"  # minutes per fold on 2 cores; any classify recipe serves
# recipe options that tie a training to the rows of the full train split, which a fold does not have
ROW_BOUND = ("soft", "extra", "extra-even", "select-extra", "init", "data", "out", "resume")


def read_groups(path: Path, ids: np.ndarray) -> np.ndarray:
    """Each row's group (person) from a CSV `id,group`; every id of the table must have one."""
    import csv
    with open(path, newline="") as f:
        rows = {r[0]: r[1] for n, r in enumerate(csv.reader(f)) if r and not (n == 0 and r[0] == "id")}
    missing = [i for i in ids if i not in rows]
    if missing:
        raise EmoDetError(f"{path}: no group for {len(missing)} row(s), e.g. id {missing[0]}")
    return np.array([rows[i] for i in ids])


def load_train_split(table: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(faces (N, 2304) uint8, labels, ids as str) of a table's train split."""
    import h5py
    usage = SPLIT_TO_USAGE["train"]
    try:
        with h5py.File(table, "r") as h5:
            return (h5[f"{usage}_pixel"][:], h5[f"{usage}_label"][:].astype(np.int64),
                    np.array([i.decode() for i in h5[f"{usage}_id"][:]]))
    except FileNotFoundError:
        raise EmoDetError(f"{table}: not found; run `make convert-fer2013` (or convert your dataset) first") from None
    except KeyError as exc:
        raise EmoDetError(f"{table}: no {exc.args[0]} in the table") from None


def write_fold_table(pixels, labels, ids, held_out: np.ndarray, out: Path) -> Path:
    """A table whose train split is every row not `held_out` and whose validation split is the held-out rows."""
    import h5py
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    with h5py.File(tmp, "w") as h5:
        for split, rows in (("train", ~held_out), ("val", held_out)):
            usage = SPLIT_TO_USAGE[split]
            h5[f"{usage}_pixel"] = pixels[rows]
            h5[f"{usage}_label"] = labels[rows]
            h5[f"{usage}_id"] = np.array([i.encode() for i in ids[rows]])
    tmp.replace(out)
    return out


def fold_metrics(probs: np.ndarray, labels: np.ndarray, classes: list[int]) -> dict:
    """top-1, macro F1 over `classes`, and the recall of each of them."""
    from sklearn.metrics import f1_score
    pred = probs.argmax(1)
    recall = {int(c): float((pred[labels == c] == c).mean()) if (labels == c).any() else None for c in classes}
    return dict(n=int(len(labels)), top1=float((pred == labels).mean()),
                macro_f1=float(f1_score(labels, pred, labels=classes, average="macro", zero_division=0)),
                recall=recall)


def summary(per_fold: list[dict], classes: list[int]) -> dict:
    """Mean and standard deviation (over folds, ddof 1) of every figure of fold_metrics."""
    def ms(values):
        v = np.array([x for x in values if x is not None], float)
        return dict(mean=float(v.mean()), std=float(v.std(ddof=1)) if len(v) > 1 else 0.0)
    return dict(top1=ms([m["top1"] for m in per_fold]), macro_f1=ms([m["macro_f1"] for m in per_fold]),
                recall={c: ms([m["recall"][c] for m in per_fold]) for c in classes})


def recipe_argv(recipe: dict, epochs: int | None) -> list[str]:
    """The trainer's options of a classify recipe, less those a fold cannot use (one-line error for those that
    change what is learned: soft targets and extra tables are per row of the full split)."""
    args = dict(recipe["args"])
    bound = [k for k in ("soft", "extra", "select-extra", "init") if k in args]
    if bound:
        raise EmoDetError(f"recipe {recipe['name']}: `{bound[0]}` belongs to the full train split; k-fold needs a "
                          f"recipe without {', '.join(bound)} (e.g. {DEFAULT_RECIPE.name})")
    if epochs:
        args["epochs"] = epochs
    argv = []
    for key, value in args.items():
        if key in ROW_BOUND:
            continue
        argv += [f"--{key}", *map(str, value if isinstance(value, list) else [value])]
    return argv


def predict_probs(checkpoint: Path, pixels: np.ndarray) -> np.ndarray:
    from scripts.torch_classifier import predict_logits
    from scripts.torch_models import load_checkpoint
    model, prep, _, _ = load_checkpoint(checkpoint)
    side = int(round(np.sqrt(pixels.shape[1])))
    logits = predict_logits(model.eval(), pixels.reshape(-1, side, side), prep)
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def run_kfold(table: Path, recipe_path: Path, k: int, seed: int = 0, epochs: int | None = None,
              groups: Path | None = None, out: Path | None = None) -> dict:
    from scripts import torch_classifier
    from scripts.train_recipe import load_recipe
    recipe = load_recipe(recipe_path)
    if recipe["task"] != "classify":
        raise EmoDetError(f"{recipe_path}: k-fold trains classifiers; this recipe's task is {recipe['task']}")
    argv = recipe_argv(recipe, epochs)
    pixels, labels, ids = load_train_split(table)
    fold = fold_of_rows(labels, k, seed, read_groups(groups, ids) if groups else None)
    out = out or RUNS_DIR / "kfold" / f"{recipe['name']}-k{k}"
    out.mkdir(parents=True, exist_ok=True)
    names = list(torch_classifier.label_names(table, int(recipe["args"].get("classes", 7))))
    n_classes = len(names)
    classes = [c for c in range(n_classes) if (labels == c).any()]
    probs = np.full((len(labels), n_classes), np.nan, dtype=np.float32)
    per_fold = []
    t0 = time.perf_counter()
    for i in range(k):
        held = fold == i
        run = out / f"fold{i}"
        fold_h5 = write_fold_table(pixels, labels, ids, held, run / "table.h5")
        print(f"fold {i + 1}/{k}: train {int((~held).sum())} faces, held out {int(held.sum())}", flush=True)
        torch_classifier.main(argv + ["--data", str(fold_h5), "--out", str(run), "--seed", str(seed), "--quiet"])
        probs[held] = predict_probs(run / "last.pt", pixels[held])
        per_fold.append(dict(fold_metrics(probs[held], labels[held], classes), fold=i))
        fold_h5.unlink()  # the fold's table is only the trainer's input; folds.npz says how to rebuild it
        m = per_fold[-1]
        print(f"fold {i + 1}/{k}: top-1 {m['top1']:.4f}  macro F1 {m['macro_f1']:.4f}", flush=True)
    np.savez_compressed(out / "oof.npz", probs=probs, labels=labels, ids=ids, fold=fold)
    result = dict(table=str(table), recipe=str(recipe_path), k=k, seed=seed, epochs=epochs or recipe["args"].get("epochs"),
                  identity_disjoint=bool(groups), classes={c: names[c] for c in classes}, folds=per_fold,
                  summary=summary(per_fold, classes), oof_top1=float((probs.argmax(1) == labels).mean()),
                  minutes=round((time.perf_counter() - t0) / 60, 1), out=str(out))
    (out / "metrics.json").write_text(json.dumps(result, indent=1))
    from eval.plots import plot_folds
    plot_folds(per_fold, {c: names[c] for c in classes}, out / "kfold.png",
               f"{recipe['name']}: {k}-fold, {result['epochs']} epochs each")
    return result


def report_text(r: dict) -> str:
    s = r["summary"]
    names = r["classes"]
    head = "fold  " + "  ".join(f"{'top-1':>6s} {'macroF1':>7s}".split()) + "  " + "  ".join(f"{names[c][:7]:>7s}" for c in names)
    lines = [f"{r['k']}-fold ({'identity-disjoint, ' if r['identity_disjoint'] else ''}stratified, seed {r['seed']}) "
             f"of {r['table']} with {r['recipe']}, {r['epochs']} epochs per fold, {r['minutes']} min:", head]
    for m in r["folds"]:
        lines.append(f"{m['fold']:>4d}  {m['top1']:6.4f} {m['macro_f1']:7.4f}  "
                     + "  ".join(f"{m['recall'][c]:7.3f}" for c in names))
    lines.append("mean  " + f"{s['top1']['mean']:6.4f} {s['macro_f1']['mean']:7.4f}  "
                 + "  ".join(f"{s['recall'][c]['mean']:7.3f}" for c in names))
    lines.append(" std  " + f"{s['top1']['std']:6.4f} {s['macro_f1']['std']:7.4f}  "
                 + "  ".join(f"{s['recall'][c]['std']:7.3f}" for c in names))
    lines.append("(per class: recall of the held-out faces; each fold scored by its last-epoch model)")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emodet kfold", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--table", type=Path, default=FER2013_TABLE, help="HDF5 table whose train split is folded")
    p.add_argument("--recipe", type=Path, default=DEFAULT_RECIPE, help="classify recipe (cfg/recipes/*.yaml)")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None, help="epochs per fold (default: the recipe's)")
    p.add_argument("--groups", type=Path, default=None,
                   help="CSV `id,group` (a person per row): folds are then identity-disjoint")
    p.add_argument("--out", type=Path, default=None, help="default runs/kfold/<recipe>-k<K>")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    r = run_kfold(args.table, args.recipe, args.k, args.seed, args.epochs, args.groups, args.out)
    print(report_text(r))
    out = Path(r["out"])
    print(f"metrics {out / 'metrics.json'}; plot {out / 'kfold.png'}; out-of-fold probabilities {out / 'oof.npz'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
