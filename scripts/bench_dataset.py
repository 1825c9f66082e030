"""Benchmark part `label-noise`: k-fold, the label-issue finder and its effect on FER2013, in one command.

1. `make kfold` on FER2013 Training (5 folds, stratified, seed 0) with the fertiny recipe, EPOCHS per fold: per-fold
   and mean +- std top-1 / macro F1 of the held-out folds, and every Training face's out-of-fold probabilities.
2. The finder on them (cleanlab confident learning), scored against FER+: a FER2013 Training face whose label differs
   from the majority of its ten FER+ votes counts as mislabelled (faces without a FER+ majority are left out).
3. The effect, measured honestly: the same recipe trained twice on all of Training, once as it is and once without
   the flagged faces; each checkpoint selected on PublicTest (never filtered), then scored on FER2013 PrivateTest
   and the FER+ test split (majority labels). Which of the two the project would use is chosen on PublicTest.
"""
from __future__ import annotations

import json
from pathlib import Path

from converters.settings import DATA_DIR, FER2013_TABLE, RUNS_DIR

FERPLUS_TABLE = DATA_DIR / "ferplus" / "table" / "fer2013.h5"
RECIPE = "fer2013-tiny"  # fertiny: K + 2 trainings must fit a 2-core CPU


def _evaluate(weights: Path) -> dict:
    from scripts.scoring import evaluate_classifier
    out = {}
    for key, table, split in (("publictest", FER2013_TABLE, "val"), ("privatetest", FER2013_TABLE, "test"),
                              ("ferplus_test", FERPLUS_TABLE, "test")):
        m = evaluate_classifier(weights, table, split, k=2)
        out[key] = dict(top1=m["top1"], macro_f1=m["macro_f1"], n=m["n"])
    return out


def bench_label_noise(k: int = 5, fold_epochs: int = 3, epochs: int = 6, reuse: bool = False) -> dict:
    from eval import label_issues
    from scripts import kfold, torch_classifier
    from converters.settings import CFG_DIR
    if not FER2013_TABLE.exists() or not FERPLUS_TABLE.exists():
        return dict(skipped=f"needs {FER2013_TABLE} and {FERPLUS_TABLE} (make convert-fer2013)")
    root = RUNS_DIR / "kfold" / f"{RECIPE}-k{k}"
    if not (reuse and (root / "metrics.json").exists()):
        kfold.run_kfold(FER2013_TABLE, CFG_DIR / "recipes" / f"{RECIPE}.yaml", k, 0, fold_epochs, out=root)
    folds = json.loads((root / "metrics.json").read_text())
    filtered = root / "filtered.h5"
    if not (reuse and (root / "label_issues.json").exists() and filtered.exists()):
        label_issues.main(["--oof", str(root / "oof.npz"), "--table", str(FER2013_TABLE), "--truth",
                           str(FERPLUS_TABLE), "--filtered", str(filtered)])
    finder = json.loads((root / "label_issues.json").read_text())
    runs = {}
    for name, table in (("unfiltered", FER2013_TABLE), ("flagged_removed", filtered)):
        run = RUNS_DIR / "torch" / f"label-noise-{name}"
        if not (reuse and (run / "best.pt").exists()):
            torch_classifier.main(["--data", str(table), "--model", "fertiny", "--epochs", str(epochs),
                                   "--threads", "2", "--out", str(run), "--quiet"])
        history = json.loads((run / "history.json").read_text())
        runs[name] = dict(_evaluate(run / "best.pt"), minutes=round(sum(h["seconds"] for h in history) / 60, 1),
                          train_faces=finder["filtered"]["train"] if name != "unfiltered" else finder["rows"])
    chosen = max(runs, key=lambda n: runs[n]["publictest"]["top1"])
    result = dict(k=k, fold_epochs=fold_epochs, epochs=epochs, kfold=folds["summary"], kfold_minutes=folds["minutes"],
                  oof_top1=folds["oof_top1"], finder=finder, runs=runs, chosen_on_publictest=chosen)
    result["markdown"] = label_noise_markdown(result)
    return result


def label_noise_markdown(r: dict) -> str:
    s, f = r["kfold"], r["finder"]
    k = f["known_answer"]
    fl, bl = k["flags"], k["baseline_same_count"]
    lines = [f"**k-fold** (`make kfold K={r['k']} EPOCHS={r['fold_epochs']}`, recipe `{RECIPE}` = fertiny; FER2013 "
             f"Training, stratified, seed 0; each fold scored by its last-epoch model; {r['kfold_minutes']} min): "
             f"held-out top-1 {s['top1']['mean']:.4f} ± {s['top1']['std']:.4f}, macro F1 {s['macro_f1']['mean']:.4f} "
             f"± {s['macro_f1']['std']:.4f} (mean ± std over the folds).", "",
             f"**Finder** (cleanlab {__import__('cleanlab').__version__} confident learning on the out-of-fold "
             f"probabilities): {f['flagged']} of {f['rows']} Training faces flagged. Against FER+ ({k['n']} faces "
             f"with a FER+ majority; {k['noisy']} = {k['noisy_rate']:.1%} of them labelled otherwise in FER2013):", "",
             "| finder | faces | precision | recall |", "|---|---:|---:|---:|",
             f"| confident-learning flags | {fl['n']} | {fl['precision']:.3f} | {fl['recall']:.3f} |",
             f"| baseline: lowest self-confidence, same count | {bl['n']} | {bl['precision']:.3f} | {bl['recall']:.3f} |",
             "", "ROC AUC of the scores (1 = every mislabelled face ranked above every other): "
             + ", ".join(f"{m.replace('_', ' ')} {a:.3f}" for m, a in k["auc"].items()) + ".", "",
             f"**Effect** (fertiny, {r['epochs']} epochs on two threads, checkpoint selected on PublicTest, which is "
             f"never filtered):", "",
             "| training set | faces | PublicTest top-1 | PrivateTest top-1 | PrivateTest macro F1 | FER+ test top-1 | "
             "FER+ test macro F1 | minutes |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, x in r["runs"].items():
        lines.append(f"| {name.replace('_', ' ')} | {x['train_faces']} | {x['publictest']['top1']:.4f} | "
                     f"{x['privatetest']['top1']:.4f} | {x['privatetest']['macro_f1']:.4f} | "
                     f"{x['ferplus_test']['top1']:.4f} | {x['ferplus_test']['macro_f1']:.4f} | {x['minutes']} |")
    lines += ["", f"Chosen on PublicTest: **{r['chosen_on_publictest'].replace('_', ' ')}**. Command: "
              f"`python -m scripts.bench --parts label-noise`."]
    return "\n".join(lines)
