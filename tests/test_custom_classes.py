"""A dataset's own classes, end to end: a folder of labelled face photos with four classes of our own (calm,
cross, down, pleased: a mapping of the synthetic sample's neutral, anger, sad, happy) -> convert -> train -> export
-> evaluate -> predict and the app's analyzer, every step speaking those names; the canonical table stays the
default everywhere else."""
from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

from converters.errors import EmoDetError
from converters.labels import custom_names, label_code

MAPPING = {"neutral": "calm", "anger": "cross", "sad": "down", "happy": "pleased"}


def test_custom_names_are_checked_and_looked_up_by_their_own_spelling():
    assert custom_names(["Calm", "focused", "tired", "angry"]) == ("calm", "focused", "tired", "angry")
    with pytest.raises(ValueError, match="inside"):
        custom_names(["anger", "danger"])  # Darknet's substring lookup would confuse them
    with pytest.raises(ValueError, match="one lower-case word"):
        custom_names(["very tired", "calm"])
    with pytest.raises(ValueError, match="at least two"):
        custom_names(["calm", "calm"])
    names = ("calm", "focused", "tired", "angry")
    assert label_code("Tired", names) == 2
    with pytest.raises(KeyError, match="this dataset's classes: calm, focused"):
        label_code("happy", names)
    assert label_code("happiness", ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")) == 1


@pytest.fixture(scope="module")
def custom_photos(sample_dir, tmp_path_factory):
    """Face photos in class folders named by MAPPING, cut from the synthetic sample's faces (96 px crops)."""
    from converters.convert import convert_affectnet
    from converters.pipeline import ConvertOptions
    root = tmp_path_factory.mktemp("custom")
    convert_affectnet(sample_dir, ["training", "validation"], root / "canonical",
                      ConvertOptions(sizes=(96,), formats=("crops",), workers=1, progress=False))
    photos = root / "photos"
    for split in ("train", "val"):
        for canonical, ours in MAPPING.items():
            for png in sorted((root / "canonical" / "crops" / "96" / split / canonical).glob("*.png")):
                (photos / ours).mkdir(parents=True, exist_ok=True)
                shutil.copy(png, photos / ours / f"{split}-{png.name}")
    return root, photos


def test_custom_classes_from_conversion_to_prediction(custom_photos, tmp_path):
    import h5py
    from converters import convert
    from converters.writers import table_names
    from scripts import export, torch_classifier
    root, photos = custom_photos
    out = tmp_path / "data"
    assert convert.main(["--input", str(photos), "--out", str(out), "--names", "auto", "--sizes", "48",
                         "--formats", "crops", "table", "yolo", "--workers", "1", "--quiet"]) == 0
    ours = ("calm", "cross", "down", "pleased")  # the folders, sorted
    table = out / "table" / "fer2013.h5"
    assert table_names(table) == ours
    assert {p.name for p in (out / "crops" / "48" / "train").iterdir()} <= set(ours)
    assert (out / "yolo" / "emotion.names").read_text().split() == list(ours)
    with h5py.File(table, "r") as h5:
        assert set(np.unique(h5["Training_label"][:])) <= set(range(4))

    run = tmp_path / "run"
    assert torch_classifier.main(["--data", str(table), "--model", "fertiny", "--epochs", "2", "--batch", "16",
                                  "--threads", "1", "--out", str(run), "--quiet"]) == 0
    import torch
    ck = torch.load(run / "best.pt", weights_only=False)
    assert ck["classes"] == list(ours)
    assert export.main([str(run / "best.pt")]) == 0
    onnx = run / "best.onnx"

    from scripts.scoring import evaluate_classifier
    m = evaluate_classifier(onnx, table, "val", k=2)
    assert list(m["names"]) == list(ours) and m["n"] > 0 and 0 <= m["top1"] <= 1

    from scripts.predict import predict
    from scripts.two_stage import TwoStageDetector
    # these photos are tight face crops: the whole frame is the face (Haar is not what is tested here)
    detector = TwoStageDetector(onnx, faces=lambda img: (np.array([[0, 0, img.shape[1], img.shape[0]]]), np.ones(1)))
    assert tuple(detector.names) == ours and detector.n_classes == 4
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(next((photos / "pleased").glob("*.png")), one / "face.png")
    predict(one, detector, tmp_path / "pred", conf=0.0)
    rows = list(csv.DictReader(open(tmp_path / "pred" / "detections.csv")))
    assert rows and {r["name"] for r in rows} <= set(ours)

    from scripts.app import Analyzer
    analyzer = Analyzer(classifier=onnx)
    assert analyzer.names("two-stage") == list(ours)


def test_names_auto_is_refused_for_affectnet(sample_dir, tmp_path):
    from converters import convert
    with pytest.raises(EmoDetError, match="AffectNet's classes are its codes"):
        convert.dataset_names("auto", sample_dir)
    with pytest.raises(EmoDetError, match="inside"):
        convert.dataset_names("anger,danger", sample_dir)
