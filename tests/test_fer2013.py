from __future__ import annotations

import csv
import gzip

import h5py
import numpy as np
import pytest

from converters import fer2013 as fer
from converters.balance import class_weights, crop_index, stratified_folds, write_folds
from converters.labels import CANONICAL_NAMES, FER2013_TO_CANONICAL
from converters.merge import merged_training_table
from converters.pipeline import ConvertOptions, convert_split
from converters.writers import finalize_table

# shared/datasets/README.md, "Counts": rows per Usage and FER2013 emotion 0..6
README_COUNTS = {
    "train": [3969, 435, 4079, 7186, 4796, 3161, 4932],
    "val": [466, 56, 496, 891, 652, 414, 604],
    "test": [489, 55, 527, 876, 588, 414, 624],
}


@pytest.fixture(scope="module")
def fer_records(real_fer2013):
    return fer.read_fer2013(real_fer2013 / "fer2013.csv.gz")


def test_rows_per_usage_and_class_equal_the_readme(fer_records):
    records, rejects = fer_records
    assert rejects == []
    for split, expected in README_COUNTS.items():
        canon = np.bincount([r.expression for r in records[split]], minlength=7)
        assert [int(canon[FER2013_TO_CANONICAL[f]]) for f in range(7)] == expected


def test_first_rows_and_original_indices(fer_records, real_fer2013):
    records, _ = fer_records
    first = records["train"][0]
    assert first.row == 0 and first.expression == FER2013_TO_CANONICAL[0]
    assert list(first.pixels.reshape(-1)[:5]) == [70, 80, 82, 72, 58]
    rows = np.loadtxt(real_fer2013 / "rows.txt", dtype=np.int64)
    all_rows = sorted(r.row for recs in records.values() for r in recs)
    assert np.array_equal(all_rows, np.sort(rows))


def _independent_majority(path):
    """FER+ majority written out plainly: drop single votes, the winner needs more than half of the rest."""
    out = []
    with open(path) as f:
        for row in csv.DictReader(f):
            votes = [int(row[c]) for c in ("neutral", "happiness", "surprise", "sadness", "anger", "disgust",
                                            "fear", "contempt", "unknown", "NF")]
            votes = [v if v > 1 else 0 for v in votes]
            best = max(votes)
            if sum(votes) == 0 or best * 2 <= sum(votes):
                out.append("unknown")
                continue
            out.append(("neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                        "unknown", "NF")[votes.index(best)])
    return out


def test_ferplus_majority_counts_equal_an_independent_count(real_fer2013):
    votes = fer.read_ferplus_votes(real_fer2013 / "fer2013new.csv")
    hard, soft, reason = fer.ferplus_labels(votes[list(fer.FERPLUS_VOTE_COLUMNS)].to_numpy(), "majority", 8)
    expect = _independent_majority(real_fer2013 / "fer2013new.csv")
    names = {"neutral": 0, "happiness": 1, "surprise": 3, "sadness": 2, "anger": 6, "disgust": 5, "fear": 4,
             "contempt": 7}
    want = np.array([names.get(e, -1) for e in expect])
    assert np.array_equal(hard, want)
    assert (reason == "FER+ not a face").sum() == expect.count("NF")
    kept = hard >= 0
    assert np.allclose(soft[kept].sum(1), 1) and np.array_equal(soft[kept].argmax(1), hard[kept])


def test_ferplus_modes_on_hand_made_votes():
    votes = np.array([
        [6, 4, 0, 0, 0, 0, 0, 0, 0, 0],  # majority neutral
        [5, 5, 0, 0, 0, 0, 0, 0, 0, 0],  # tie: no majority
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1],  # all single votes: noise
        [0, 0, 0, 0, 0, 0, 0, 0, 2, 8],  # not a face
        [4, 3, 3, 0, 0, 0, 0, 0, 0, 0],  # spread
    ], dtype=float)
    hard, _, reason = fer.ferplus_labels(votes, "majority", 8)
    assert list(hard) == [0, -1, -1, -1, -1]
    assert list(reason) == ["", "FER+ unknown", "FER+ unknown", "FER+ not a face", "FER+ unknown"]
    dist = fer.ferplus_distribution(votes, "probability")
    assert dist[1, :2] == pytest.approx([0.5, 0.5])  # both tied emotions kept
    assert dist[4, :3] == pytest.approx([0.4, 0.3, 0.3])
    multi = fer.ferplus_distribution(votes, "multi_target")
    assert multi[4, :3] == pytest.approx([0.4, 0.3, 0.3]) and multi[0, :2] == pytest.approx([0.6, 0.4])


def test_hdf5_shapes_and_pixels_match_the_csv(fer_records, real_fer2013, tmp_path):
    records, _ = fer_records
    opts = ConvertOptions(sizes=(48,), formats=("table",), workers=1, progress=False)
    subset = {s: recs[:200] for s, recs in records.items()}
    for split, recs in subset.items():
        convert_split(recs, split, tmp_path, opts)
    finalize_table(tmp_path, CANONICAL_NAMES[:7])
    with gzip.open(real_fer2013 / "fer2013.csv.gz", "rt") as f:
        rows = [r for _, r in zip(range(400), csv.reader(f))][1:]
    with h5py.File(tmp_path / "table" / "fer2013.h5") as h5:
        for usage in ("Training", "PublicTest", "PrivateTest"):
            assert h5[f"{usage}_pixel"].shape == (200, 2304) and h5[f"{usage}_pixel"].dtype == np.uint8
            assert h5[f"{usage}_label"].shape == (200,)
        px, lab = h5["Training_pixel"][:], h5["Training_label"][:]
    train_rows = [r for r in rows if r[2] == "Training"]
    for i in (0, 1, 57, 199):
        assert np.array_equal(px[i], np.array(train_rows[i][1].split(), dtype=np.uint8))
        assert lab[i] == FER2013_TO_CANONICAL[int(train_rows[i][0])]


def test_two_fold_split_is_stratified_and_reproducible():
    rng = np.random.default_rng(0)
    labels = rng.choice(7, size=3000, p=[0.25, 0.25, 0.15, 0.1, 0.1, 0.05, 0.1])
    a = stratified_folds(labels, 2, seed=5)
    b = stratified_folds(labels, 2, seed=5)
    assert all(np.array_equal(x[1], y[1]) for x, y in zip(a, b))
    whole = np.bincount(labels, minlength=7) / len(labels)
    for _, val in a:
        part = np.bincount(labels[val], minlength=7) / len(val)
        assert np.abs(part - whole).max() < 0.01


def test_fold_files_on_crops(sample_dir, tmp_path):
    from converters.convert import convert_affectnet
    convert_affectnet(sample_dir, ["training"], tmp_path, ConvertOptions(sizes=(48,), formats=("crops",), workers=1,
                                                                          progress=False))
    root = write_folds(tmp_path / "crops" / "48", tmp_path / "folds", 2, seed=1)
    train0 = (root / "fold0" / "train.txt").read_text().split()
    val0 = (root / "fold0" / "val.txt").read_text().split()
    assert set(train0).isdisjoint(val0)
    assert len(train0) + len(val0) == len(crop_index(tmp_path / "crops" / "48")["train"])
    assert set(val0) == set((root / "fold1" / "train.txt").read_text().split())


def test_class_weights_are_inverse_frequency():
    w = class_weights({"a": 10, "b": 30, "c": 0})
    assert w == {"a": pytest.approx(2.0), "b": pytest.approx(2 / 3), "c": 0.0}


def test_merge_removes_exact_duplicates_and_keeps_sources():
    a = np.random.default_rng(0).integers(0, 255, (3, 2304)).astype(np.uint8)
    b = np.stack([a[1], a[1], (a[0] + 1).astype(np.uint8)])
    px, y, src, dropped = merged_training_table({"fer2013": (a, np.array([0, 1, 2])),
                                                 "affectnet": (b, np.array([1, 1, 3]))})
    assert len(px) == 4 and dropped == {"fer2013": 0, "affectnet": 2}
    assert src == ["fer2013"] * 3 + ["affectnet"] and list(y) == [0, 1, 2, 3]


def test_oversampling_tops_every_class_up_to_the_largest(sample_dir, tmp_path):
    import cv2
    from converters.balance import oversample
    from converters.convert import convert_affectnet
    convert_affectnet(sample_dir, ["training", "validation"], tmp_path,
                      ConvertOptions(sizes=(48,), formats=("crops",), workers=1, progress=False))
    before = crop_index(tmp_path / "crops" / "48")
    per = oversample(tmp_path / "crops" / "48", tmp_path / "balanced", seed=3)
    after = crop_index(tmp_path / "balanced")
    largest = max(sum(1 for _, c in before["train"] if c == n) for n in per)
    for name in per:
        assert sum(1 for _, c in after["train"] if c == name) == largest
    assert len(after["val"]) == len(before["val"])  # val is linked unchanged
    aug = next(p for p, _ in after["train"] if "_aug" in p.name)
    assert cv2.imread(str(aug), cv2.IMREAD_UNCHANGED).shape == (48, 48)
