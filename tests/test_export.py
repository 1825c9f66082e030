from __future__ import annotations

import numpy as np
import torch

from scripts.classifiers import load_classifier
from scripts.export import export_torch_classifier, max_abs_difference
from scripts.torch_models import build_model


NAMES = ["neutral", "happy", "sad", "surprise", "fear", "disgust", "anger"]


def _untrained_export(tmp_path, seed: int):
    """An untrained fertiny checkpoint (tmp_path/m.pt) and its ONNX export."""
    torch.manual_seed(seed)
    model, prep = build_model("fertiny", 7)
    model.eval()
    torch.save(dict(model=model.state_dict(), arch="fertiny", classes=NAMES, preprocess=prep.__dict__),
               tmp_path / "m.pt")
    return export_torch_classifier(tmp_path / "m.pt")


def test_onnx_export_matches_torch_and_carries_names(tmp_path):
    names = NAMES
    onnx_path = _untrained_export(tmp_path, 1)
    faces = np.random.default_rng(0).integers(0, 255, (16, 48, 48)).astype(np.uint8)
    assert max_abs_difference(tmp_path / "m.pt", onnx_path, faces) < 1e-4
    clf = load_classifier(onnx_path)
    assert clf.names == names and clf.backend == "onnx"
    ten = clf.scores(faces, "tencrop")
    assert ten.shape == (16, 7) and np.isfinite(ten).all()
    # every TTA of the ONNX path (views batched together) equals the torch path (one view at a time)
    from scripts.torch_classifier import predict_logits
    from scripts.torch_models import load_checkpoint
    model, prep, _, _ = load_checkpoint(tmp_path / "m.pt")
    for tta in ("none", "flip", "tencrop"):
        assert np.allclose(clf.scores(faces, tta), predict_logits(model, faces, prep, tta), atol=1e-4), tta
    assert np.allclose(clf.scores(faces[:1], "flip"), clf.scores(faces, "flip")[:1], atol=1e-5)


def test_int8_copy_keeps_names_and_tracks_the_float_model(tmp_path):
    from scripts.export import quantize_classifier
    names = NAMES
    onnx_path = _untrained_export(tmp_path, 2)
    rng = np.random.default_rng(0)
    # smooth random faces (blurred noise), so activations look like images rather than white noise
    import cv2
    faces = np.stack([cv2.GaussianBlur(rng.integers(0, 255, (48, 48)).astype(np.uint8), (0, 0), 3) * 2
                      for _ in range(96)]).clip(0, 255).astype(np.uint8)
    q = quantize_classifier(onnx_path, faces[:64])
    assert q.name == "m-int8.onnx" and q.stat().st_size < onnx_path.stat().st_size
    clf, ref = load_classifier(q), load_classifier(onnx_path)
    assert clf.names == names and clf.prep == ref.prep
    a, b = ref.scores(faces[64:]), clf.scores(faces[64:])  # faces not used for calibration
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.9
    assert not np.allclose(a, b)  # it really is a different (quantized) graph
