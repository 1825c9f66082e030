from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, precision_recall_fscore_support

from eval import confusion
from scripts import scoring
from eval.classification import classification_metrics, confusion_matrix, group_metrics, topk_accuracy


def test_topk_on_a_hand_made_array():
    scores = np.array([[0.1, 0.7, 0.2], [0.5, 0.3, 0.2], [0.2, 0.3, 0.5], [0.4, 0.35, 0.25]])
    labels = np.array([1, 1, 0, 2])
    assert topk_accuracy(scores, labels, 1) == 0.25  # only row 0
    assert topk_accuracy(scores, labels, 2) == 0.5  # rows 0 and 1
    assert topk_accuracy(scores, labels, 3) == 1.0


def test_confusion_rows_are_truth():
    cm = confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert cm.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]


@pytest.mark.parametrize("seed", range(5))
def test_prf_agree_with_sklearn(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 6, 200)  # class 6 never occurs in the labels
    scores = rng.random((200, 7))
    scores[np.arange(200), labels] += rng.random(200)
    m = classification_metrics(scores, labels, [str(i) for i in range(7)])
    pred = scores.argmax(1)
    present = sorted(set(labels) | set(pred))
    p, r, f, s = precision_recall_fscore_support(labels, pred, labels=present, zero_division=0)
    for i, c in enumerate(present):
        assert m["per_class"][str(c)]["precision"] == pytest.approx(p[i])
        assert m["per_class"][str(c)]["recall"] == pytest.approx(r[i])
    assert m["macro_f1"] == pytest.approx(f1_score(labels, pred, average="macro", zero_division=0))
    assert m["micro_f1"] == pytest.approx(f1_score(labels, pred, average="micro"))


def test_group_metrics_split_the_data():
    scores = np.eye(3)[[0, 1, 2, 0]]
    labels = np.array([0, 1, 0, 0])
    g = group_metrics(scores, labels, ["a", "b", "c"], {"gender": np.array(["f", "m", "f", "m"])})
    assert g["gender"]["f"]["n"] == 2 and g["gender"]["f"]["top1"] == 0.5
    assert g["gender"]["m"]["top1"] == 1.0


@pytest.fixture()
def tiny_model_and_data(tmp_path):
    from scripts.torch_models import build_model
    torch.manual_seed(0)
    model, prep = build_model("fertiny", 7)
    ck = dict(model=model.state_dict(), arch="fertiny", classes=["neutral", "happy", "sad", "surprise", "fear",
                                                                  "disgust", "anger"], preprocess=prep.__dict__)
    torch.save(ck, tmp_path / "m.pt")
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "d.h5", "w") as h5:
        h5["PrivateTest_pixel"] = rng.integers(0, 255, (30, 2304)).astype(np.uint8)
        h5["PrivateTest_label"] = rng.integers(0, 7, 30)
        h5["PrivateTest_id"] = np.array([f"f{i}" for i in range(30)], dtype="S")
    (tmp_path / "groups.csv").write_text("id,age\n" + "".join(f"f{i},{'young' if i < 10 else 'old'}\n"
                                                               for i in range(30)))
    return tmp_path


def test_confusion_cli_end_to_end(tiny_model_and_data):
    d = tiny_model_and_data
    code = confusion.main(["--split", "PrivateTest", "--weights", str(d / "m.pt"), "--data", str(d / "d.h5"),
                           "--tta", "tencrop", "--groups", str(d / "groups.csv"), "--out", str(d / "out"),
                           "--json", str(d / "m.json")])
    assert code == 0
    m = json.loads((d / "m.json").read_text())
    for key in ("top1", "topk", "macro_f1", "per_class", "confusion"):
        assert key in m
    assert np.array(m["confusion"]).sum() == 30 and m["groups"]["age"]["young"]["n"] == 10
    assert 0 <= m["top1"] <= m["topk"] <= 1
    assert (d / "out" / "confusion_test.png").stat().st_size > 1000


def test_ten_crops_shapes_and_mirrors():
    from scripts.torch_classifier import ten_crops
    x = np.arange(48 * 48, dtype=np.float32).reshape(1, 1, 48, 48)
    crops = ten_crops(x, 40)
    assert len(crops) == 10 and all(c.shape == (1, 1, 40, 40) for c in crops)
    assert np.array_equal(crops[5], crops[0][..., ::-1]) and crops[1][0, 0, 0, 0] == 8
    t = ten_crops(torch.from_numpy(x), 40)
    assert all(np.array_equal(a, b.numpy()) for a, b in zip(crops, t))


def test_flip_views_are_the_centre_crop_and_its_mirror():
    from converters.errors import EmoDetError
    from scripts.torch_classifier import centre_crop, tta_views
    x = np.arange(2 * 48 * 48, dtype=np.float32).reshape(2, 1, 48, 48)
    centre, mirror = tta_views(x, 40, "flip")
    assert np.array_equal(centre, centre_crop(x, 40)) and np.array_equal(mirror, centre[..., ::-1])
    assert mirror[0, 0, 0, 0] == x[0, 0, 4, 43]
    t = tta_views(torch.from_numpy(x), 40, "flip")
    assert np.array_equal(t[1].numpy(), mirror) and len(tta_views(x, 40, "none")) == 1
    with pytest.raises(EmoDetError, match="unknown TTA"):
        tta_views(x, 40, "fivecrop")


def test_input_size_renders_the_face_at_another_resolution(tiny_model_and_data):
    d = tiny_model_and_data
    own = scoring.evaluate_classifier(d / "m.pt", d / "d.h5", "PrivateTest")
    same = scoring.evaluate_classifier(d / "m.pt", d / "d.h5", "PrivateTest", input_size=40)
    larger = scoring.evaluate_classifier(d / "m.pt", d / "d.h5", "PrivateTest", input_size=64)
    assert same["confusion"] == own["confusion"] and larger["input_size"] == 64
    assert sum(map(sum, larger["confusion"])) == 30  # every face scored at the new size
    from scripts.classifiers import _torch_classifier
    faces = np.random.default_rng(1).integers(0, 255, (5, 48, 48)).astype(np.uint8)
    a = _torch_classifier(d / "m.pt").scores(faces)
    b = _torch_classifier(d / "m.pt", 64).scores(faces)
    assert a.shape == b.shape and not np.allclose(a, b)  # the network did see other pixels


def test_input_size_is_refused_for_onnx(tmp_path):
    from converters.errors import EmoDetError
    from scripts.classifiers import load_classifier
    (tmp_path / "m.onnx").write_bytes(b"")
    with pytest.raises(EmoDetError, match="torch checkpoints"):
        load_classifier(tmp_path / "m.onnx", input_size=64)
