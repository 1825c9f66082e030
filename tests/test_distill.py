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
