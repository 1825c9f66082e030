"""k-fold splits, k-fold training with a recipe on a tiny table, and the label-issue finder on planted flips."""
from __future__ import annotations

import numpy as np
import pytest

from converters.balance import fold_of_rows, stratified_folds
from converters.errors import EmoDetError


def test_folds_are_disjoint_cover_every_row_and_keep_class_proportions():
    labels = np.repeat(np.arange(4), [100, 50, 30, 20])
    folds = stratified_folds(labels, 5, seed=3)
    held = np.concatenate([h for _, h in folds])
    assert sorted(held) == list(range(len(labels)))  # each row held out exactly once
    for train, h in folds:
        assert not set(train) & set(h)
        assert np.array_equal(np.bincount(labels[h], minlength=4), [20, 10, 6, 4])  # stratified
    assert np.array_equal(fold_of_rows(labels, 5, seed=3), fold_of_rows(labels, 5, seed=3))  # seeded
    assert not np.array_equal(fold_of_rows(labels, 5, seed=3), fold_of_rows(labels, 5, seed=4))


def test_folds_are_identity_disjoint_when_asked():
    rng = np.random.default_rng(0)
    people = np.repeat(np.arange(40), 6)  # 40 people, 6 photos each
    labels = rng.integers(0, 3, len(people))
    fold = fold_of_rows(labels, 4, seed=0, groups=people)
    for p in range(40):
        assert len(set(fold[people == p])) == 1  # a person's photos are all in one fold
    with pytest.raises(EmoDetError, match="at least 4 groups"):
        fold_of_rows(labels[:12], 4, groups=people[:12])
    with pytest.raises(EmoDetError, match="k >= 2"):
        fold_of_rows(labels, 1)


def planted(n=1200, k=4, flip=0.1, seed=0):
    """Out-of-fold-like probabilities of a decent model, and labels with `flip` of them changed on purpose."""
    rng = np.random.default_rng(seed)
    true = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), true] += 2.5
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    given = true.copy()
    flipped = rng.random(n) < flip
    given[flipped] = (true[flipped] + rng.integers(1, k, flipped.sum())) % k
    return probs, given, flipped


def test_finder_ranks_planted_label_flips_above_the_rest():
    from eval.label_issues import issue_flags, issue_scores, known_answer
    probs, given, flipped = planted()
    scores = issue_scores(probs, given)
    flags = issue_flags(probs, given)
    k = known_answer(scores, flags, flipped)
    assert k["auc"]["self_confidence"] > 0.9
    top = np.argsort(-scores["self_confidence"])[:flipped.sum()]
    assert flipped[top].mean() > 0.7  # most of the top-ranked rows are planted flips
    assert k["flags"]["recall"] > 0.6 and k["flags"]["precision"] > 0.6
    # classes absent from the labels (a column of the 7) do not break it
    wide = np.concatenate([probs * 0.98, np.full((len(probs), 3), 0.02 / 3)], 1)
    assert np.allclose(issue_scores(wide, given)["self_confidence"].argsort()[-20:].size, 20)


def test_recipe_with_soft_targets_is_refused_for_kfold():
    from scripts.kfold import recipe_argv
    with pytest.raises(EmoDetError, match="soft"):
        recipe_argv(dict(name="x", args=dict(model="fervgg-s", soft="a.csv")), None)
    assert recipe_argv(dict(name="x", args=dict(model="fervgg-s", epochs=40, threads=2)), 1) == \
        ["--model", "fervgg-s", "--epochs", "1", "--threads", "2"]


def tiny_table(path, n_per_class=40, seed=0):
    """A table of 48 px 'faces' whose class is a bright horizontal band (mirror images keep it): learnable in a
    few epochs."""
    import h5py
    rng = np.random.default_rng(seed)
    faces, labels = [], []
    for c in range(4):
        for _ in range(n_per_class):
            f = rng.integers(0, 60, (48, 48)).astype(np.uint8)
            f[6 + c * 9:6 + (c + 1) * 9, :] += 150
            faces.append(f.reshape(-1))
            labels.append(c)
    faces, labels = np.array(faces), np.array(labels)
    ids = np.array([f"t{i:05d}".encode() for i in range(len(labels))])
    with h5py.File(path, "w") as h5:
        for usage in ("Training", "PublicTest", "PrivateTest"):
            h5[f"{usage}_pixel"], h5[f"{usage}_label"], h5[f"{usage}_id"] = faces, labels, ids
    return path


def test_kfold_trains_each_fold_and_writes_out_of_fold_probabilities(tmp_path):
    import json
    from scripts import kfold
    table = tiny_table(tmp_path / "t.h5")
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: tiny\ntask: classify\nargs:\n  model: fertiny\n  epochs: 8\n  batch: 16\n  lr: 0.05\n"
                      "  threads: 1\n")
    assert kfold.main(["--table", str(table), "--recipe", str(recipe), "--k", "3", "--out", str(tmp_path / "k")]) == 0
    z = np.load(tmp_path / "k" / "oof.npz")
    assert not np.isnan(z["probs"]).any() and np.allclose(z["probs"].sum(1), 1, atol=1e-4)
    assert sorted(set(z["fold"])) == [0, 1, 2]
    m = json.loads((tmp_path / "k" / "metrics.json").read_text())
    assert len(m["folds"]) == 3 and set(m["summary"]) == {"top1", "macro_f1", "recall"}
    assert m["summary"]["top1"]["mean"] > 0.5  # the band is learnable: far above the 0.25 of chance
    assert (tmp_path / "k" / "kfold.png").exists() and not (tmp_path / "k" / "fold0" / "table.h5").exists()
    from eval import label_issues
    truth = tiny_table(tmp_path / "truth.h5")  # a second labelling that disagrees on 16 faces
    import h5py
    with h5py.File(truth, "r+") as h5:
        h5["Training_label"][:16] = (h5["Training_label"][:16] + 1) % 4
    assert label_issues.main(["--oof", str(tmp_path / "k" / "oof.npz"), "--table", str(table),
                              "--truth", str(truth), "--filtered", str(tmp_path / "f.h5")]) == 0
    report = json.loads((tmp_path / "k" / "label_issues.json").read_text())
    assert report["rows"] == 160 and report["known_answer"]["noisy"] == 16
    f = report["filtered"]  # flagged train rows dropped, the other splits as they were
    assert f["train"] == 160 - report["flagged"] and f["val"] == 160 and f["test"] == 160
    assert (tmp_path / "k" / "label_issues.jpg").exists()
    rows = (tmp_path / "k" / "label_issues.csv").read_text().splitlines()
    assert len(rows) == 161 and rows[0].startswith("rank,id,label,predicted")
