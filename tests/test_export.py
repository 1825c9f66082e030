from __future__ import annotations

import numpy as np
import torch

from scripts.classifiers import load_classifier
from scripts.export import export_torch_classifier, max_abs_difference
from scripts.torch_models import build_model


def test_onnx_export_matches_torch_and_carries_names(tmp_path):
    torch.manual_seed(1)
    model, prep = build_model("fertiny", 7)
    model.eval()
    names = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]
    torch.save(dict(model=model.state_dict(), arch="fertiny", classes=names, preprocess=prep.__dict__),
               tmp_path / "m.pt")
    onnx_path = export_torch_classifier(tmp_path / "m.pt")
    faces = np.random.default_rng(0).integers(0, 255, (16, 48, 48)).astype(np.uint8)
    assert max_abs_difference(tmp_path / "m.pt", onnx_path, faces) < 1e-4
    clf = load_classifier(onnx_path)
    assert clf.names == names and clf.backend == "onnx"
    ten = clf.scores(faces, "tencrop")
    assert ten.shape == (16, 7) and np.isfinite(ten).all()
