"""Distillation targets (scripts/distill.py) and their round trip into the torch trainer's --soft reader."""
import numpy as np
import pytest

from scripts.classifiers import softmax
from scripts.distill import distillation_targets, write_soft_csv
from scripts.torch_classifier import load_soft_targets


def test_temperature_softens_without_changing_the_ranking():
    logits = np.array([[2.0, 0.0, -1.0]])
    p1, p4 = softmax(logits, 1.0), softmax(logits, 4.0)
    assert p1.sum() == pytest.approx(1) and p4.sum() == pytest.approx(1)
    assert p1[0, 0] == pytest.approx(np.exp(2) / (np.exp(2) + 1 + np.exp(-1)))
    assert p4.argmax() == p1.argmax() == 0 and p4[0, 0] < p1[0, 0]


def test_targets_mix_label_and_teacher_and_survive_the_csv(tmp_path):
    teacher = np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]])
    t = distillation_targets(teacher, np.array([1, 2]), hard_weight=0.5)
    assert np.allclose(t, [[0.3, 0.65, 0.05], [0.1, 0.1, 0.8]])
    assert np.allclose(distillation_targets(teacher, np.array([1, 2]), 1.0), np.eye(3)[[1, 2]])
    write_soft_csv(tmp_path / "soft.csv", t, "test")
    assert np.allclose(load_soft_targets(tmp_path / "soft.csv", 2), t, atol=1e-5)
    with pytest.raises(Exception, match="2 rows for 3"):
        load_soft_targets(tmp_path / "soft.csv", 3)


def test_the_extras_follow_the_main_table_with_their_own_labels(tmp_path):
    """One row a face of the training mix, in its order: the main table's distilled rows first, then the extra
    table's faces (listed as `training_mix` lists them, classes evened) one-hot."""
    import h5py
    from scripts.distill import with_extra_labels
    from scripts.torch_classifier import training_mix

    def table(path, labels):
        with h5py.File(path, "w") as h5:
            h5["Training_pixel"] = np.zeros((len(labels), 4), np.uint8)
            h5["Training_label"] = np.array(labels)
    table(tmp_path / "main.h5", [0, 1])
    table(tmp_path / "extra.h5", [2, 2, 2, 0])      # class 0 has a third of class 2's faces: listed 3 times
    _, mix = training_mix(tmp_path / "main.h5", [f"{tmp_path / 'extra.h5'}:1"], even=10)
    main = distillation_targets(np.array([[0.6, 0.3, 0.1], [0.2, 0.2, 0.6]]), np.array([0, 1]), 0.5)
    rows = with_extra_labels(main, mix)
    assert rows.shape == (len(mix), 3) == (2 + 6, 3)
    assert np.allclose(rows[:2], main)
    assert np.allclose(rows[2:], np.eye(3)[[2, 2, 2, 0, 0, 0]])
    assert np.allclose(rows.sum(1), 1)
