"""Rewrites of exported detector graphs (scripts/onnx_graph.py): the same outputs, the faster form, idempotent."""
from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from converters.settings import DEFAULT_DETECTOR
from scripts import onnx_graph
from scripts.export import quantized_copy

ANCHORS = 21


def _run(proto, x: np.ndarray) -> np.ndarray:
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(proto.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def dfl_model():
    """Ultralytics' DFL decoding as its exporter writes it: (1, 64, A) -> (1, 4, 16, A) -> Transpose (1, 16, 4, A)
    -> Softmax over axis 1 -> 1x1 Conv with the bin values 0..15 -> (1, 4, A)."""
    nodes = [helper.make_node("Reshape", ["x", "shape16"], ["r"], name="/model.9/dfl/Reshape"),
             helper.make_node("Transpose", ["r"], ["t"], perm=[0, 2, 1, 3], name="/model.9/dfl/Transpose"),
             helper.make_node("Softmax", ["t"], ["s"], axis=1, name="/model.9/dfl/Softmax"),
             helper.make_node("Conv", ["s", "bins"], ["c"], name="/model.9/dfl/conv/Conv"),
             helper.make_node("Reshape", ["c", "shape4"], ["y"], name="/model.9/dfl/Reshape_1")]
    inits = [numpy_helper.from_array(np.array([1, 4, 16, ANCHORS], np.int64), "shape16"),
             numpy_helper.from_array(np.array([1, 4, ANCHORS], np.int64), "shape4"),
             numpy_helper.from_array(np.arange(16, dtype=np.float32).reshape(1, 16, 1, 1), "bins")]
    graph = helper.make_graph(nodes, "dfl", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 64, ANCHORS])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, ANCHORS])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_dfl_on_last_axis_gives_the_same_numbers_and_is_idempotent():
    x = np.random.default_rng(0).normal(0, 3, (1, 64, ANCHORS)).astype(np.float32)
    plain = dfl_model()
    before = _run(plain, x)
    assert onnx_graph.dfl_on_last_axis(plain)
    ops = {n.op_type: n for n in plain.graph.node}
    assert "Conv" not in ops and "MatMul" in ops
    assert [a.i for a in ops["Softmax"].attribute] == [-1] and list(ops["Transpose"].attribute[0].ints) == [0, 1, 3, 2]
    np.testing.assert_allclose(_run(plain, x), before, rtol=1e-6, atol=1e-5)
    assert not onnx_graph.dfl_on_last_axis(plain)  # already rewritten: left as it is


def test_dfl_on_last_axis_leaves_other_softmaxes():
    model = dfl_model()
    next(n for n in model.graph.node if n.op_type == "Transpose").attribute[0].ints[:] = [0, 1, 2, 3]
    assert not onnx_graph.dfl_on_last_axis(model)


@pytest.fixture(scope="module")
def stem(tmp_path_factory):
    """A small network starting like the detectors (3x3 conv from the 3-channel input, SiLU, another conv),
    exported to ONNX and quantized with the project's own static int8 (QDQ), calibrated on grey images."""
    import torch
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.SiLU(), torch.nn.Conv2d(8, 4, 3, padding=1))
    folder = tmp_path_factory.mktemp("stem")
    path = folder / "stem.onnx"
    torch.onnx.export(net.eval(), torch.zeros(1, 3, 32, 32), str(path), input_names=["images"], opset_version=17,
                      dynamo=False)
    rng = np.random.default_rng(0)
    grey = [np.repeat(rng.integers(0, 256, (1, 1, 32, 32)), 3, 1).astype(np.float32) / 255 for _ in range(8)]
    return path, quantized_copy(path, grey, folder / "stem-int8.onnx"), grey


def test_grey_first_conv_runs_the_first_convolution_on_one_channel(stem):
    plain, int8, grey = stem
    proto = onnx.load(str(int8))
    rng = np.random.default_rng(1)
    # photo levels up to 128: on CPUs with AVX2 but no VNNI, ONNX Runtime's int8 convolution adds pairs of
    # uint8 x int8 products in 16 bits (VPMADDUBSW), which saturate above 32767 (255 x 127 x 2 does): the
    # three-channel original would then be the inexact one
    x = np.repeat(rng.integers(0, 129, (1, 1, 32, 32)), 3, 1).astype(np.float32) / 255
    full = np.repeat(rng.integers(0, 256, (1, 1, 32, 32)), 3, 1).astype(np.float32) / 255
    before, before_full = _run(proto, x), _run(proto, full)
    assert onnx_graph.grey_first_conv(proto)
    first = next(n for n in proto.graph.node if n.op_type == "Conv")
    weight = next(i for i in proto.graph.initializer if i.name == first.input[1])
    assert proto.graph.node[0].op_type == "Slice" and list(weight.dims)[:2] == [8, 1]
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] == "images" for n in proto.graph.node)
    after = _run(proto, x)
    step = np.abs(np.diff(np.unique(before))).min()  # the output's int8 step
    assert np.abs(after - before).max() <= 2 * step + 1e-6  # a few activations round to the next level
    assert np.mean(after == before) > 0.9
    # over the whole range, never farther from the float network than the original (on any CPU)
    exact = _run(onnx.load(str(plain)), full)
    assert np.abs(_run(proto, full) - exact).max() <= np.abs(before_full - exact).max() + 2 * step + 1e-6
    assert not onnx_graph.grey_first_conv(proto)  # already rewritten


def test_faster_detector_leaves_no_unused_constant(stem, tmp_path):
    """ONNX Runtime warns at every session start about each constant no node reads: the rewrites drop theirs."""
    _, int8, _ = stem
    copy = tmp_path / "grey-int8.onnx"
    copy.write_bytes(int8.read_bytes())
    onnx_graph.faster_detector(copy, True)
    graph = onnx.load(str(copy)).graph
    used = {i for n in graph.node for i in n.input}
    assert graph.node[0].op_type == "Slice" and all(i.name in used for i in graph.initializer)


def test_faster_detector_leaves_a_float_graph_and_colour_detectors_alone(stem, tmp_path):
    plain, int8, _ = stem
    for path, grey in ((plain, True), (int8, False)):
        copy = tmp_path / path.name
        copy.write_bytes(path.read_bytes())
        onnx_graph.faster_detector(copy, grey)
        assert copy.read_bytes() == path.read_bytes()


def test_the_shipped_default_detector_is_rewritten():
    """The shipped int8 default went through faster_detector (as scripts.export now writes it): rewriting it again
    changes nothing."""
    if not DEFAULT_DETECTOR.exists():
        pytest.skip(f"{DEFAULT_DETECTOR}: not in this checkout")
    proto = onnx.load(str(DEFAULT_DETECTOR))
    assert not onnx_graph.dfl_on_last_axis(proto) and not onnx_graph.grey_first_conv(proto)
    assert not onnx_graph.pool_before_silu(proto)
    assert proto.graph.node[0].op_type == "Slice" and not onnx_graph._drop_unused_initializers(proto.graph)


def _pooled_stem(folder, positive: bool, shared: bool = False):
    """A stem like the detectors' (conv, SiLU, 2x2 max pool, conv) exported and quantized with the project's own
    static int8. `positive`: weights, bias and inputs >= 0, so every pre-activation is positive (else they spread
    over both sides of SiLU's minimum); `shared`: the
    SiLU is also read by a second branch (as in SPPF, where the pooled and unpooled values are concatenated)."""
    import torch

    class Stem(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.Conv2d(8, 4, 3, padding=1)

        def forward(self, x):
            y = torch.nn.functional.silu(self.a(x))
            pooled = self.b(torch.nn.functional.max_pool2d(y, 2))
            return torch.cat([pooled, self.b(y[..., ::2, ::2])], 1) if shared else pooled
    torch.manual_seed(0)
    net = Stem().eval()
    with torch.no_grad():
        if positive:
            net.a.weight.abs_(), net.a.bias.abs_().add_(0.1)
        else:  # pre-activations well below SiLU's minimum at -1.28 too
            net.a.weight.mul_(6)
    path = folder / f"pooled-{positive}-{shared}.onnx"
    torch.onnx.export(net, torch.zeros(1, 3, 32, 32), str(path), input_names=["images"], opset_version=17,
                      dynamo=False)
    rng = np.random.default_rng(0)
    calib = [rng.random((1, 3, 32, 32), np.float32) for _ in range(8)]
    return onnx.load(str(quantized_copy(path, calib, folder / f"pooled-{positive}-{shared}-int8.onnx")))


def _op_order(proto) -> list[str]:
    return [n.op_type for n in proto.graph.node if n.op_type in ("MaxPool", "Sigmoid", "Mul")]


def test_pool_before_silu_is_exact_where_the_activations_are_positive(tmp_path):
    """SiLU rises wherever its input is positive, so pooling first gives the very same int8 values there."""
    proto = _pooled_stem(tmp_path, positive=True)
    x = np.random.default_rng(1).random((1, 3, 32, 32), np.float32)
    before = _run(proto, x)
    assert _op_order(proto) == ["Sigmoid", "Mul", "MaxPool"]
    assert onnx_graph.pool_before_silu(proto)
    onnx.checker.check_model(proto)
    assert _op_order(proto) == ["MaxPool", "Sigmoid", "Mul"]
    np.testing.assert_array_equal(_run(proto, x), before)
    assert not onnx_graph.pool_before_silu(proto)  # already rewritten


def test_pool_before_silu_differs_only_in_windows_of_negative_activations(tmp_path):
    """With weights of both signs some windows hold only negative pre-activations, where the orders differ (by at
    most SiLU's depth, 0.28, before the next convolution); the outputs stay close, not equal."""
    proto = _pooled_stem(tmp_path, positive=False)
    x = np.random.default_rng(1).random((1, 3, 32, 32), np.float32)
    before = _run(proto, x)
    assert onnx_graph.pool_before_silu(proto)
    after = _run(proto, x)
    assert not np.array_equal(after, before)
    assert np.abs(after - before).mean() < 0.1 * np.abs(before).mean()


def test_pool_before_silu_leaves_a_silu_that_something_else_reads(tmp_path):
    proto = _pooled_stem(tmp_path, positive=False, shared=True)
    assert not onnx_graph.pool_before_silu(proto)
