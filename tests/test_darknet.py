"""The real Darknet binaries on the synthetic sample with tiny budgets: files and parsing, not accuracy
(batch-norm statistics need hundreds of iterations before outputs mean anything; shared/ENGINES.md). The chain runs
once per engine here: AlexeyAB's build (`make darknet`) and pjreddie's (Debian's package, or $DARKNET)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from converters.convert import convert_affectnet
from scripts.darknet_model import check_weights, read_weights
from converters.errors import EmoDetError
from converters.pipeline import ConvertOptions
from eval.detection_report import evaluate_folders
from scripts import darknet

from converters.settings import DARKNET_BUILD_DIR

ENGINES = [b for b in (os.environ.get("DARKNET"), str(DARKNET_BUILD_DIR / "darknet"), shutil.which("darknet"))
           if b and Path(b).exists()]
ENGINES = list(dict.fromkeys(str(Path(b).resolve()) for b in ENGINES))
pytestmark = pytest.mark.skipif(not ENGINES, reason="no darknet binary (make darknet, apt-get install -y darknet, "
                                                    "or set DARKNET)")


@pytest.fixture(scope="module", params=ENGINES or [None], ids=lambda b: Path(b).parent.name if b else "none")
def chain(sample_dir, tmp_path_factory, request):
    old = os.environ.get("DARKNET")
    os.environ["DARKNET"] = request.param
    yield _chain(sample_dir, tmp_path_factory)
    if old is None:
        os.environ.pop("DARKNET", None)
    else:
        os.environ["DARKNET"] = old


def _chain(sample_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("dk")
    convert_affectnet(sample_dir, ["training", "validation"], root / "data",
                      ConvertOptions(sizes=(48,), formats=("darknet", "yolo"), workers=1, progress=False))
    cls_cfg, cls_w = darknet.train_classifier(root / "data" / "darknet" / "48", root / "cls", epochs=0.3, batch=16)
    valid = darknet.validate_classifier(cls_cfg, cls_w, root / "cls" / "classifier.data", root / "cls")
    probe = darknet.render_cfg("yolov3-tiny", root / "probe.cfg", batch=1, subdivisions=1, size=160,
                               learning_rate=0.001, burn_in=1, max_batches=1, steps="1,1", filters=36, classes=7,
                               anchors="10,14, 23,27, 37,58, 81,82, 135,169, 344,319")
    conv = darknet.partial(cls_cfg, cls_w, root / "cls.conv.9", 9, det_cfg=probe)
    det_cfg, det_w = darknet.train_detector(root / "data" / "yolo", root / "det", init=conv, epochs=0.1, batch=4)
    results = darknet.validate_detector(det_cfg, det_w, root / "det" / "emotion.data", root / "det")
    return dict(root=root, cls_cfg=cls_cfg, cls_w=cls_w, valid=valid, conv=conv, det_cfg=det_cfg, det_w=det_w,
                results=results)


def test_weights_written_by_the_binary_pass_our_reader(chain):
    assert check_weights(chain["cls_cfg"], chain["cls_w"])["floats"] > 0
    assert check_weights(chain["det_cfg"], chain["det_w"])["seen"] > 0
    header, floats = read_weights(chain["conv"])
    assert header["seen"] == 0 and len(floats) == check_weights(chain["cls_cfg"], chain["conv"], 9)["floats"]


def test_classifier_valid_is_parsed(chain):
    v = chain["valid"]
    assert v["n"] > 0 and 0 <= v["top1"] <= v["topk"] <= 1 and v["k"] == 2


def test_detector_valid_output_is_evaluated(chain):
    root = chain["root"]
    m = evaluate_folders(root / "data" / "yolo" / "val", chain["results"], "darknet",
                         root / "data" / "yolo" / "emotion.names")
    assert m["n_images"] > 0 and 0 <= m["map50"] <= 1 and m["n_gt"] > 0


def test_training_log_becomes_a_curve(chain):
    root = chain["root"]
    n = darknet.training_curve(root / "det" / "train-detector.log", root / "det.csv", root / "det.png")
    assert n >= 1 and (root / "det.csv").read_text().startswith("iteration,") and (root / "det.png").exists()


def test_bad_class_ids_are_refused_before_training(chain, tmp_path):
    import shutil as sh
    yolo = tmp_path / "yolo"
    sh.copytree(chain["root"] / "data" / "yolo", yolo)
    label = next((yolo / "train").glob("*.txt"))
    label.write_text("9 0.5 0.5 0.2 0.2\n")
    (yolo / "train.txt").write_text((yolo / "train.txt").read_text().replace(str(chain["root"] / "data" / "yolo"),
                                                                            str(yolo)))
    (yolo / "emotion.data").write_text((yolo / "emotion.data").read_text().replace(
        str(chain["root"] / "data" / "yolo"), str(yolo)))
    with pytest.raises(EmoDetError, match="bad training label"):
        darknet.train_detector(yolo, tmp_path / "run", epochs=0.01, batch=2)


def test_missing_binary_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("DARKNET", "/nonexistent/darknet")
    with pytest.raises(EmoDetError, match="apt-get install -y darknet"):
        darknet.darknet_binary()


def test_v4_tiny_is_refused_in_one_line_by_a_build_that_cannot_parse_it(chain, tmp_path):
    from scripts.darknet_model import layer_shapes, parse_cfg
    cfg = darknet.render_cfg("yolov4-tiny", tmp_path / "v4.cfg", batch=1, subdivisions=1, size=160,
                             learning_rate=0.001, burn_in=1, max_batches=1, steps="1,1", filters=36, classes=7,
                             anchors="10,14, 23,27, 37,58, 81,82, 135,169, 344,319")
    shapes = layer_shapes(parse_cfg(cfg.read_text()))
    assert len(shapes) == 38 and shapes[3]["c"] == 32 and shapes[29]["c"] == 36  # groups split channels in half
    problems = darknet.cfg_problems(cfg)
    if darknet.cfg_problems(darknet.render_cfg("yolov3-tiny", tmp_path / "v3.cfg", batch=1, subdivisions=1, size=160,
                                               learning_rate=0.001, burn_in=1, max_batches=1, steps="1,1",
                                               filters=36, classes=7, anchors="1,1, 2,2, 3,3, 4,4, 5,5, 6,6")):
        pytest.fail("yolov3-tiny must parse cleanly")
    if darknet.engine()["flavour"] == "pjreddie":  # Debian's build: refused in one line, with the way out
        assert "groups" in " ".join(problems)
        with pytest.raises(EmoDetError, match="cannot parse v4.cfg .*Unused field.*make darknet"):
            darknet.require_parsable(cfg)
    else:
        assert problems == []


def test_csdarknet53_omega_template_has_the_csp_layout_and_is_refused_by_an_old_build(chain, tmp_path):
    from scripts.darknet_model import layer_shapes, parse_cfg
    cfg = darknet.render_cfg("csdarknet53-omega", tmp_path / "csp.cfg", batch=1, size=64, max_crop=72,
                             learning_rate=0.1, max_batches=10, classes=7)
    shapes = layer_shapes(parse_cfg(cfg.read_text()))
    # 105 backbone layers (the `conv.105` cut newer builds use), then avgpool, class conv, softmax
    assert len(shapes) == 108 and shapes[104]["c"] == 1024 and (shapes[104]["h"], shapes[104]["w"]) == (2, 2)
    assert shapes[106]["c"] == 7 and shapes[107]["type"] == "softmax"
    # per stage: a route back to the downsampled map, then one joining both branches (twice the branch width)
    assert [s["c"] for s in shapes if s["type"] == "route"] == [64, 128, 128, 128, 256, 256, 512, 512, 1024, 1024]
    if darknet.engine()["flavour"] == "pjreddie":  # Debian's build: refused before training
        assert "mish" in " ".join(darknet.cfg_problems(cfg))
        with pytest.raises(EmoDetError, match="cannot parse .*mish.*MODEL=small"):
            darknet.train_classifier(chain["root"] / "data" / "darknet" / "48", tmp_path / "run", epochs=0.1,
                                     model="csdarknet53-omega")


@pytest.mark.parametrize("free", [2, 1])
def test_side_by_side_overlaps_jobs_only_when_there_is_a_core_for_each(monkeypatch, free):
    import time
    monkeypatch.setattr(darknet, "free_cores", lambda: free)
    spans = []

    def job(k):
        def run():
            t0 = time.perf_counter()
            time.sleep(0.3)
            spans.append((t0, time.perf_counter()))
            return k
        return run
    results, together = darknet.side_by_side(job("a"), job("b"))
    assert results == ["a", "b"] and together == (free >= 2)
    (s0, e0), (s1, e1) = sorted(spans)
    assert (s1 < e0) == together  # overlapping in time exactly when run together


def test_two_real_detector_trainings_side_by_side_both_write_weights(chain, tmp_path):
    yolo = chain["root"] / "data" / "yolo"
    results, _ = darknet.side_by_side(lambda: darknet.train_detector(yolo, tmp_path / "a", chain["conv"], 0.05, 160, 4),
                                      lambda: darknet.train_detector(yolo, tmp_path / "b", None, 0.05, 160, 4))
    for cfg, weights in results:
        assert check_weights(cfg, weights)["seen"] > 0
    assert results[0][1].parent.parent == tmp_path / "a" and results[1][1].parent.parent == tmp_path / "b"


def test_detection_cli_runs_darknet_weights_first(chain, tmp_path):
    import json
    from eval import detection
    root = chain["root"]
    out = tmp_path / "m.json"
    assert detection.main(["--weights", str(chain["det_w"]), "--cfg", str(chain["det_cfg"]), "--data",
                           str(root / "det" / "emotion.data"), "--names", str(root / "data" / "yolo" / "emotion.names"),
                           "--pred", str(tmp_path / "eval"), "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["style"] == "darknet" and m["n_images"] > 0 and list((tmp_path / "eval" / "results").glob("comp4_*"))
