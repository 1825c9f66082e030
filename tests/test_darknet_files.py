from __future__ import annotations

import shutil

import numpy as np
import pytest

from scripts.darknet_model import (check_weights, cut_weights, expected_floats, layer_shapes, parse_cfg, read_weights,
                                   write_weights)
from converters.errors import EmoDetError
from scripts import darknet

CLS = dict(batch=32, size=48, max_crop=56, learning_rate=0.1, max_batches=100, classes=7)
DET = dict(batch=16, subdivisions=1, size=160, learning_rate=0.001, burn_in=10, max_batches=100, steps="80,90",
           filters=36, classes=7, anchors="10,14, 23,27, 37,58, 81,82, 135,169, 344,319")


def test_rendered_cfgs_have_no_inline_comments_and_parse(tmp_path):
    cfg = darknet.render_cfg("emotion-classifier", tmp_path / "c.cfg", **CLS)
    text = cfg.read_text()
    assert all("#" not in line or line.lstrip().startswith("#") for line in text.splitlines())
    shapes = layer_shapes(parse_cfg(text))
    assert shapes[0]["floats"] == 16 * 4 + 16 * 3 * 9  # biases, BN scales/mean/var, 3x3x3 weights
    assert (shapes[8]["h"], shapes[8]["c"]) == (3, 256) and shapes[9]["c"] == 7
    det = darknet.render_cfg("yolov3-tiny", tmp_path / "d.cfg", **DET)
    d = layer_shapes(parse_cfg(det.read_text()))
    assert d[15]["c"] == 36 and d[22]["c"] == 36 and (d[16]["h"], d[23]["h"]) == (5, 10)
    assert darknet.shared_layers(cfg, det) == 9


def test_missing_placeholder_is_an_error(tmp_path):
    with pytest.raises(EmoDetError, match="classes"):
        darknet.render_cfg("emotion-classifier", tmp_path / "c.cfg", **{k: v for k, v in CLS.items() if k != "classes"})


def test_weights_round_trip_and_size_check(tmp_path):
    cfg = darknet.render_cfg("emotion-classifier", tmp_path / "c.cfg", **CLS)
    n = expected_floats(parse_cfg(cfg.read_text()))
    floats = np.random.default_rng(0).standard_normal(n).astype(np.float32)
    write_weights(tmp_path / "w.weights", floats, seen=12345)
    header, back = read_weights(tmp_path / "w.weights")
    assert header == dict(major=0, minor=2, revision=5, seen=12345) and np.array_equal(back, floats)
    assert check_weights(cfg, tmp_path / "w.weights")["floats"] == n
    write_weights(tmp_path / "short.weights", floats[:-1])
    with pytest.raises(EmoDetError, match="needs"):
        check_weights(cfg, tmp_path / "short.weights")


@pytest.mark.skipif(shutil.which("darknet") is None, reason="no darknet binary (apt-get install -y darknet)")
def test_partial_by_the_binary_keeps_exactly_the_first_layers(tmp_path):
    cfg = darknet.render_cfg("emotion-classifier", tmp_path / "c.cfg", **CLS)
    det = darknet.render_cfg("yolov3-tiny", tmp_path / "d.cfg", **DET)
    sections = parse_cfg(cfg.read_text())
    floats = np.random.default_rng(1).standard_normal(expected_floats(sections)).astype(np.float32)
    write_weights(tmp_path / "cls.weights", floats, seen=999)
    out = darknet.partial(cfg, tmp_path / "cls.weights", tmp_path / "cls.conv.9", 9, det_cfg=det)
    header, kept = read_weights(out)
    assert header["seen"] == 0
    assert np.array_equal(kept, cut_weights(sections, floats, 9))
    with pytest.raises(EmoDetError, match="only the first 9 layers"):
        darknet.partial(cfg, tmp_path / "cls.weights", tmp_path / "cls.conv.10", 10, det_cfg=det)


def test_kmeans_anchors_recover_two_clusters():
    rng = np.random.default_rng(0)
    wh = np.r_[rng.normal([20, 24], 1, (50, 2)), rng.normal([90, 110], 3, (50, 2))]
    a = darknet.kmeans_anchors(wh, k=2)
    assert a[0] == pytest.approx([20, 24], abs=1.5) and a[1] == pytest.approx([90, 110], abs=3)
