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
    # the export's --calib-method reaches a classifier's copy too
    p = quantize_classifier(onnx_path, faces[:64], tmp_path / "m-p.onnx", calibration="percentile:99.9")
    assert np.corrcoef(a.ravel(), load_classifier(p).scores(faces[64:]).ravel())[0, 1] > 0.9
    assert p.read_bytes() != q.read_bytes()


def _dynamic_conv_onnx(tmp_path):
    """A one-convolution ONNX model taking any input size (as a detector with several passes does)."""
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 4, 3, padding=1).eval()
    path = tmp_path / "conv.onnx"
    torch.onnx.export(conv, torch.rand(1, 1, 32, 32), str(path), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {2: "h", 3: "w"}, "y": {2: "h", 3: "w"}}, dynamo=False)
    return path


def _int8_scale(path, tensor: str) -> float:
    """The int8 scale the quantizer chose for `tensor` of the model at `path`."""
    import onnx
    from onnx import numpy_helper
    return float(next(numpy_helper.to_array(i) for i in onnx.load(str(path)).graph.initializer
                      if i.name == f"{tensor}_scale"))


def test_histogram_calibrations_take_inputs_of_several_sizes_and_clip_outliers(tmp_path):
    from scripts.export import quantized_copy
    path = _dynamic_conv_onnx(tmp_path)
    rng = np.random.default_rng(0)
    batches = [rng.random((1, 1, s, s), dtype=np.float32) for s in (128, 96, 128, 64) * 4]
    batches[3][0, 0, 5, 5] = 40.0  # one outlier pixel among 184,320: more than 99.999 % of them are under 1
    files = {m: quantized_copy(path, batches, tmp_path / f"{m.replace(':', '_')}.onnx", (), m)
             for m in ("minmax", "percentile", "percentile:99.9", "entropy")}
    scales = {m: _int8_scale(f, "x") for m, f in files.items()}
    # min-max stretches the input's range to the outlier (40 / 255); the percentiles keep the bulk of the values,
    # which lie in [0, 1) (1 / 255)
    assert abs(scales["minmax"] - 40 / 255) < 1e-3
    assert abs(scales["percentile"] - 1 / 255) < 2e-4 and scales["percentile:99.9"] <= scales["percentile"]
    assert scales["entropy"] < scales["minmax"] / 4
    scales = {m: _int8_scale(f, "y") for m, f in files.items()}
    import onnxruntime as ort
    x = rng.random((1, 1, 20, 20), dtype=np.float32)  # another size again
    ref = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    got = ort.InferenceSession(str(files["percentile"]), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert np.abs(got - ref).max() < 4 * scales["percentile"]  # a few int8 steps of the clipped range


def test_the_one_input_at_a_time_collector_is_put_back():
    from onnxruntime.quantization.calibrate import HistogramCalibrater
    from scripts.export import histograms_one_input_at_a_time
    before = HistogramCalibrater.collect_data
    with histograms_one_input_at_a_time():
        assert HistogramCalibrater.collect_data is not before
    assert HistogramCalibrater.collect_data is before


def test_unknown_calibrations_are_refused_in_one_line():
    import pytest
    from converters.errors import EmoDetError
    from scripts.export import calibration_options, main
    for bad in ("percentil", "entropy:5", "percentile:50", "percentile:abc", "minmax:1"):
        with pytest.raises(EmoDetError, match="calibration"):
            calibration_options(bad)
    with pytest.raises(EmoDetError, match="percentil"):
        main(["nothing.pt", "--int8", "--calib-method", "percentil"])
