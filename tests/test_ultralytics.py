"""Ultralytics engine on the synthetic sample with tiny budgets: files, transfer and offline behaviour, not accuracy."""
from __future__ import annotations

import json
import socket

import numpy as np
import pytest
import torch

from converters.convert import convert_affectnet
from converters.labels import class_names
from converters.pipeline import ConvertOptions
from scripts import ultra
from scripts.device import cpu_has_bf16


@pytest.fixture(scope="module")
def no_network():
    """Any attempt to open a network connection fails loudly (and is recorded)."""
    attempts = []
    real_connect, real_getaddrinfo = socket.socket.connect, socket.getaddrinfo

    def refuse(*args, **kwargs):
        attempts.append(args[1:] if len(args) > 1 else args)
        raise OSError(f"network access attempted: {attempts[-1]}")

    socket.socket.connect = refuse
    socket.getaddrinfo = refuse
    yield attempts
    socket.socket.connect, socket.getaddrinfo = real_connect, real_getaddrinfo


@pytest.fixture(scope="module")
def pipeline(sample_dir, tmp_path_factory, no_network):
    root = tmp_path_factory.mktemp("ul")
    ultra.ultralytics(root / "config")
    convert_affectnet(sample_dir, ["training", "validation"], root / "data",
                      ConvertOptions(sizes=(48,), formats=("crops", "yolo"), workers=1, progress=False))
    cls = ultra.train_classifier(root / "data" / "crops" / "48", "v8n", epochs=1, batch=16, workers=0,
                                 project=root / "runs", name="cls")
    model, report = ultra.transfer_backbone(cls, "v8n", 7)
    init = ultra.save_detection_init(model, class_names(7), root / "runs" / "init.pt")
    det = ultra.train_detector(root / "data" / "yolo" / "data.yaml", init, epochs=1, imgsz=128, batch=8, workers=0,
                               project=root / "runs", name="det")
    return dict(root=root, cls=cls, model=model, report=report, init=init, det=det)


def test_classifier_and_detector_weights_are_written(pipeline):
    assert pipeline["cls"].exists() and pipeline["det"].exists()
    ck = torch.load(pipeline["det"], map_location="cpu", weights_only=False)
    assert ck["model"].names == dict(enumerate(class_names(7)))


def test_transfer_moves_the_backbone_and_the_tensors_are_equal(pipeline):
    report = pipeline["report"]
    assert len(report.moved) == 150 and not report.skipped  # v8n layers 0-8 (shared/ENGINES.md)
    assert {int(k.split(".")[1]) for k in report.moved} == set(range(9))
    src = torch.load(pipeline["cls"], map_location="cpu", weights_only=False)["model"].float().state_dict()
    dst = pipeline["model"].state_dict()
    for key in report.moved:
        assert torch.equal(src[key], dst[key]), key
    # the saved init checkpoint holds the same tensors
    saved = torch.load(pipeline["init"], map_location="cpu", weights_only=False)["model"].state_dict()
    assert all(torch.equal(saved[k], dst[k]) for k in report.moved)
    assert not any(k.startswith("model.22.") for k in report.moved)  # the detect head starts fresh


def test_transfer_refuses_a_different_family(pipeline):
    from converters.errors import EmoDetError
    with pytest.raises(EmoDetError, match="no backbone tensor matches"):
        ultra.transfer_backbone(pipeline["cls"], "v3-tiny", 7)


def test_predict_and_evaluate_produce_valid_metrics(pipeline, tmp_path):
    from eval.detection_report import evaluate_folders
    from scripts.scoring import write_scoring_predictions
    val = sorted((pipeline["root"] / "data" / "yolo" / "val").glob("*.jpg"))
    pred = write_scoring_predictions(pipeline["det"], val, tmp_path / "pred", 128)
    assert len(list(pred.glob("*.txt"))) == len(val)
    m = evaluate_folders(pipeline["root"] / "data" / "yolo" / "val", pred, "ultralytics")
    json.dumps(m.to_json())
    assert 0 <= m["map50"] <= 1 and 0 <= m["map50_95"] <= m["map50"] + 1e-9 and m["n_gt"] > 0


def test_nothing_reached_for_the_network(pipeline, no_network):
    assert no_network == []


def test_onnx_export_matches_pytorch_and_predict_cli_writes_outputs(pipeline, tmp_path):
    import cv2
    import numpy as np
    from scripts.detectors import OnnxDetector, letterbox
    from scripts.predict import predict
    onnx_path = ultra.export_onnx(pipeline["det"], 128)
    image = cv2.imread(str(sorted((pipeline["root"] / "data" / "yolo" / "val").glob("*.jpg"))[0]))
    padded, _, _ = letterbox(image, 128)
    x = padded[:, :, ::-1].transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    model = ultra.ultralytics().YOLO(str(pipeline["det"])).model.float().eval()
    with torch.no_grad():
        ref = model(torch.from_numpy(x.copy()))[0].numpy()
    got = OnnxDetector(onnx_path, 128).sess.run(None, {"images": x})[0]
    assert got.shape == ref.shape and np.allclose(got, ref, atol=1e-3, rtol=1e-3)
    import onnx  # the export's box decoding was rewritten (scripts.onnx_graph) and still matches PyTorch above
    assert any(n.op_type == "MatMul" and "/dfl/" in n.name for n in onnx.load(str(onnx_path)).graph.node)
    r = predict(pipeline["root"] / "data" / "yolo" / "val", onnx_path, tmp_path / "out", imgsz=128, conf=0.001)
    assert r["frames"] > 0 and (tmp_path / "out" / "detections.csv").read_text().startswith("source,frame,class")
    assert len(list((tmp_path / "out").glob("*_annotated.jpg"))) == r["frames"]
    # a video file: every frame predicted, one annotated video written
    frames = [cv2.resize(cv2.imread(str(p)), (160, 120)) for p in
              sorted((pipeline["root"] / "data" / "yolo" / "val").glob("*.jpg"))[:5]]
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 5, (160, 120))
    for f in frames:
        writer.write(f)
    writer.release()
    v = predict(tmp_path / "clip.mp4", onnx_path, tmp_path / "video", imgsz=128, conf=0.001)
    assert v["frames"] == 5 and (tmp_path / "video" / "clip_annotated.mp4").stat().st_size > 0


def test_detection_cli_predicts_first_when_given_weights(pipeline, tmp_path):
    from eval import detection
    out = tmp_path / "m.json"
    assert detection.main(["--weights", str(pipeline["det"]), "--data",
                           str(pipeline["root"] / "data" / "yolo" / "data.yaml"), "--imgsz", "128",
                           "--style", "coco", "--json", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["style"] == "coco" and m["n_images"] == len(list((pipeline["root"] / "data" / "yolo" / "val").glob("*.jpg")))


def test_frozen_first_epochs_keep_the_backbone_then_train_it(pipeline):
    root = pipeline["root"]
    best = ultra.train_detector_frozen_first(root / "data" / "yolo" / "data.yaml", pipeline["init"], 1, 2,
                                             project=root / "runs", name="frozen", imgsz=128, batch=8, workers=0)
    init = torch.load(pipeline["init"], map_location="cpu", weights_only=False)["model"].float().state_dict()
    phase1 = torch.load(root / "runs" / "frozen-frozen" / "weights" / "last.pt", map_location="cpu",
                        weights_only=False)
    p1 = (phase1.get("ema") or phase1["model"]).float().state_dict()
    conv = "model.2.cv1.conv.weight"  # a transferred backbone weight: unchanged while frozen
    assert torch.equal(p1[conv], init[conv])
    assert not torch.equal(p1["model.22.cv2.0.0.conv.weight"], init["model.22.cv2.0.0.conv.weight"])
    final = torch.load(best, map_location="cpu", weights_only=False)
    assert not torch.equal((final.get("ema") or final["model"]).float().state_dict()[conv], init[conv])


def _backbone_cls_checkpoint(path, seed: int = 0, arch: str = "v8n-cls"):
    """An EmoDet torch checkpoint of a detector-backbone architecture, as scripts.torch_classifier saves it, with
    batch-norm statistics moved away from their initial values (so that a transfer forgetting them would show)."""
    from scripts.torch_models import build_model
    torch.manual_seed(seed)
    model, prep = build_model(arch, 7)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(8, 1, 40, 40))
    model.eval()
    torch.save(dict(model=model.state_dict(), arch=arch, classes=class_names(7), preprocess=prep.__dict__), path)
    return model, prep


@pytest.mark.parametrize("arch, detector, layers, tensors", [("v8n-cls", "v8n", 9, 150),
                                                               ("vggdet-cls", "vggdet", 16, 120)])
def test_torch_classifier_initialises_the_detector_backbone(tmp_path, arch, detector, layers, tensors):
    """The backbone trained with our FER recipe computes, inside the detector, exactly what it computed in the
    classifier: a grey face scaled by 1/255 gives the same last-backbone-layer features as the classifier's."""
    cls, prep = _backbone_cls_checkpoint(tmp_path / "cls.pt", arch=arch)
    assert (prep.mean, prep.std) == (0.0, 1.0)  # the detector's own input scaling
    assert ultra.backbone_detector(tmp_path / "cls.pt") == detector
    det, report = ultra.transfer_backbone(tmp_path / "cls.pt", detector, 7)
    assert len(report.moved) == tensors and not report.skipped and report.layers() == layers
    det.eval()
    grey = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        expected = cls.features(grey.expand(-1, 3, -1, -1))
        x = grey.expand(-1, 3, -1, -1)
        for layer in det.model[:layers]:  # the backbone's layers each take the previous layer's output
            x = layer(x)
    assert torch.allclose(x, expected, atol=1e-5)


def test_a_classifier_without_a_detector_backbone_is_refused(tmp_path):
    from converters.errors import EmoDetError
    from scripts.torch_models import build_model
    model, prep = build_model("fertiny", 7)
    torch.save(dict(model=model.state_dict(), arch="fertiny", classes=class_names(7), preprocess=prep.__dict__),
               tmp_path / "tiny.pt")
    with pytest.raises(EmoDetError, match="no detector backbone; train one of v8n-cls, v8s-cls, vggdet-cls"):
        ultra.transfer_backbone(tmp_path / "tiny.pt", "v8n", 7)
    with pytest.raises(EmoDetError, match="not an EmoDet backbone classifier"):
        ultra.backbone_detector(tmp_path / "tiny.pt")


@pytest.mark.skipif(not cpu_has_bf16(), reason="this CPU has no native bfloat16 (AVX-512 BF16/AMX)")
def test_bf16_training_forward_runs_in_bfloat16_returns_float32_and_comes_off(tmp_path):
    from types import SimpleNamespace
    from ultralytics.nn.tasks import DetectionModel
    torch.manual_seed(0)
    model = DetectionModel("yolov8n.yaml", nc=7, verbose=False).train()
    x = torch.rand(2, 3, 128, 128)
    plain = ultra._as_float(model(x))
    trainer = SimpleNamespace(model=model)
    ultra.bf16_training_forward(trainer)
    kernels = [p for p in model.parameters() if p.dim() == 4]
    assert all(p.is_contiguous(memory_format=torch.channels_last) and not p.is_contiguous() for p in kernels
               if p.shape[1] > 1 and p.shape[2] > 1)
    mixed = model(x)
    flat = lambda out: torch.cat([t.flatten() for t in (out.values() if isinstance(out, dict) else out)
                                  if torch.is_tensor(t)])
    assert all(t.dtype == torch.float32 for t in (mixed.values() if isinstance(mixed, dict) else mixed)
               if torch.is_tensor(t))
    # bfloat16 keeps 8 bits of mantissa: close to float32 (relative to the output scale), but not equal
    a, b = flat(plain), flat(mixed)
    assert not torch.equal(a, b) and (a - b).abs().max() < 0.05 * a.abs().max()
    ultra.plain_training_forward(trainer)
    assert all(p.is_contiguous() for p in model.parameters())
    assert torch.equal(flat(ultra._as_float(model(x))), a)
    torch.save(model, tmp_path / "m.pt")  # the callback's closure is gone, so the model pickles again


def test_the_checkpoint_sets_predict_and_eval_input_size_and_names(pipeline, tmp_path):
    """The detector was trained at 128 px: predict, eval and export use that without being told."""
    from converters.errors import EmoDetError
    from scripts.detectors import TorchDetector, load_detector
    from scripts.predict import predict
    det = load_detector(pipeline["det"])
    assert isinstance(det, TorchDetector) and det.imgsz == 128 and det.names == list(class_names(7))
    assert load_detector(pipeline["det"], 160).imgsz == 160
    with pytest.raises(EmoDetError, match="330 is not a positive multiple of 32"):
        load_detector(pipeline["det"], 330)
    # a folder: one annotated image each, and the contact sheet of all of them
    val = pipeline["root"] / "data" / "yolo" / "val"
    (tmp_path / "in").mkdir()
    for p in sorted(val.glob("*.jpg"))[:5]:
        (tmp_path / "in" / p.name).write_bytes(p.read_bytes())
    (tmp_path / "in" / "broken.jpg").write_bytes(b"not a jpeg")
    r = predict(tmp_path / "in", pipeline["det"], tmp_path / "out", conf=0.001)
    assert r["frames"] == 5 and r["bad"] == ["broken.jpg"]
    import cv2
    sheet = cv2.imread(str(tmp_path / "out" / "contact_sheet.jpg"))
    assert sheet is not None and sheet.shape[1] == 3 * 240  # 5 images: 3 columns of 240 px cells


def test_a_text_file_as_weights_is_one_line_not_a_traceback(tmp_path, capsys):
    from converters.errors import run_cli
    from scripts import predict
    fake = tmp_path / "fake.pt"
    fake.write_text("this is not a checkpoint")
    image = tmp_path / "x.jpg"
    import cv2
    import numpy as np
    cv2.imwrite(str(image), np.zeros((32, 32, 3), np.uint8))
    assert run_cli(predict.main, [str(image), "--weights", str(fake), "--out", str(tmp_path / "o")]) == 2
    assert "not an Ultralytics checkpoint" in capsys.readouterr().err


def test_a_recipe_trains_on_a_mix_of_folders(pipeline, tmp_path, monkeypatch):
    """A tiny detection recipe over two folders (one listed twice, one capped per class): the data mix is what the
    recipe says and the run writes a checkpoint that predict loads at the recipe's input size."""
    import yaml
    from scripts import train_recipe
    yolo = pipeline["root"] / "data" / "yolo"
    monkeypatch.setattr(train_recipe, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(train_recipe, "RUNS_DIR", tmp_path / "runs")
    (tmp_path / "a").symlink_to(yolo / "train")
    (tmp_path / "b").symlink_to(yolo / "val")
    recipe = dict(name="tiny", task="detect", init=str(pipeline["det"]), imgsz=96, hours=None, freeze=None, seed=0,
                  train=[dict(path="a", repeat=2), dict(path="b", per_class=1)], val=[dict(path="b")],
                  hyp=dict(epochs=1, batch=8, workers=0, plots=False))
    (tmp_path / "tiny.yaml").write_text(yaml.safe_dump(recipe))
    assert train_recipe.main(["--recipe", str(tmp_path / "tiny.yaml")]) == 0
    listed = (tmp_path / "runs" / "recipes" / "tiny" / "train.txt").read_text().split()
    def first_class(image):
        label = image.with_suffix(".txt")
        words = label.read_text().split() if label.exists() else []
        return int(words[0]) if words else -1
    n_train = len(list((yolo / "train").glob("*.jpg")))
    classes_b = {first_class(p) for p in (yolo / "val").glob("*.jpg")}
    assert len(listed) == 2 * n_train + len(classes_b)
    from scripts.detectors import load_detector
    best = tmp_path / "runs" / "ultralytics" / "tiny" / "weights" / "best.pt"
    assert load_detector(best).imgsz == 96


@pytest.mark.parametrize("given", ["", "1"])
def test_cpu_training_runs_on_every_core_unless_the_user_says_otherwise(pipeline, tmp_path, monkeypatch, given):
    """Ultralytics sets torch to cpu_count - 1 threads for CPU training (one on a 2-core machine); ours trains on
    every core this process may use, or on OMP_NUM_THREADS as the user had set it before Ultralytics' import."""
    import os
    from ultralytics.models.yolo.detect import DetectionTrainer
    monkeypatch.setattr(ultra, "OMP_THREADS_GIVEN", given)
    seen = []

    class Recording(DetectionTrainer):
        def optimizer_step(self):
            seen.append(torch.get_num_threads())
            super().optimizer_step()

    before = torch.get_num_threads()
    try:
        ultra.train_detector(pipeline["root"] / "data" / "yolo" / "data.yaml", pipeline["det"], epochs=1, imgsz=64,
                             batch=8, workers=0, project=tmp_path, name="threads", trainer=Recording, plots=False)
    finally:
        torch.set_num_threads(before)
    assert seen and set(seen) == {int(given) if given else len(os.sched_getaffinity(0))}


def test_eval_with_weights_on_two_ground_truths_keeps_their_predictions_apart(pipeline, tmp_path):
    """Each --gt gets a prediction folder of its own: the second run does not trip over the first's files."""
    import shutil
    from eval import detection
    val = pipeline["root"] / "data" / "yolo" / "val"
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copytree(val, a)
    b.mkdir()
    for p in sorted(val.iterdir())[:4]:
        shutil.copy(p, b / p.name)
    weights = tmp_path / "det.pt"
    shutil.copy(pipeline["det"], weights)
    for gt in (a, b):
        assert detection.main(["--weights", str(weights), "--gt", str(gt)]) == 0
    assert (tmp_path / "pred_det_a").is_dir() and (tmp_path / "pred_det_b").is_dir()


def test_a_recipe_starting_from_a_classifier_backbone_freezes_that_backbone(pipeline, tmp_path, monkeypatch):
    """init_backbone: the classifier's backbone moves into a fresh detector, which trains with it frozen (9
    layers of v8n) unless the recipe says otherwise; what was frozen is recorded beside the run."""
    import json
    import yaml
    from scripts import train_recipe
    _backbone_cls_checkpoint(tmp_path / "cls.pt", arch="v8n-cls")
    monkeypatch.setattr(train_recipe, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(train_recipe, "RUNS_DIR", tmp_path / "runs")
    (tmp_path / "a").symlink_to(pipeline["root"] / "data" / "yolo" / "train")
    recipe = dict(name="bb", task="detect", init_backbone="cls.pt", model="v8n", imgsz=64, train=[dict(path="a")],
                  val=[dict(path="a")], hyp=dict(epochs=1, batch=8, workers=0, plots=False))
    (tmp_path / "bb.yaml").write_text(yaml.safe_dump(recipe))
    assert train_recipe.main(["--recipe", str(tmp_path / "bb.yaml")]) == 0
    run = tmp_path / "runs" / "ultralytics" / "bb"
    assert json.loads((run / "recipe.json").read_text())["freeze"] == 9
    assert yaml.safe_load((run / "args.yaml").read_text())["freeze"] == 9


def test_extra_passes_travel_in_the_checkpoint_the_dynamic_onnx_and_its_int8_copy(pipeline, tmp_path):
    import shutil
    from scripts import export
    from scripts.detectors import CropPass, OnnxDetector, Pass, TorchDetector, load_detector
    w = tmp_path / "det.pt"
    shutil.copy(pipeline["det"], w)
    train = pipeline["root"] / "data" / "yolo" / "train"
    assert export.main([str(w), "--extra-passes", "64:0.67:0.4", "crop32:1.6:0.5", "--int8", "--calib",
                        str(train)]) == 0
    torch_det, onnx_det = load_detector(w), load_detector(w.with_suffix(".onnx"), threads=1)
    int8 = load_detector(tmp_path / "det-int8.onnx", threads=1)
    assert isinstance(torch_det, TorchDetector) and isinstance(onnx_det, OnnxDetector)
    assert (torch_det.imgsz, torch_det.extra_passes) == (128, (Pass(64, 0.67, 0.4), CropPass(32, 1.6, 0.5))) == (
        onnx_det.imgsz, onnx_det.extra_passes) == (int8.imgsz, int8.extra_passes)
    # both runtimes run a batch of crops alike
    x = np.random.default_rng(0).random((3, 3, 32, 32), np.float32)
    assert np.allclose(torch_det.raw_batch(x), onnx_det.raw_batch(x), atol=1e-3)
    import cv2
    image = cv2.imread(str(sorted((pipeline["root"] / "data" / "yolo" / "val").glob("*.jpg"))[0]))
    a, b = torch_det(image, 0.001, 0.7), onnx_det(image, 0.001, 0.7)
    assert len(a) == len(b) and np.allclose(a[:5, 1], b[:5, 1], atol=1e-3)
    assert len(int8(image, 0.001, 0.7))  # the int8 copy takes the second pass's input size too


def test_a_main_size_chosen_at_export_travels_in_all_three_files(pipeline, tmp_path):
    """--imgsz with --extra-passes: the main pass's size chosen apart from the training size (128 here) is the
    default of the .pt, the dynamic .onnx and its int8 copy; a size named at load time still wins."""
    import shutil
    from scripts import export
    from scripts.detectors import load_detector
    w = tmp_path / "det.pt"
    shutil.copy(pipeline["det"], w)
    train = pipeline["root"] / "data" / "yolo" / "train"
    assert export.main([str(w), "--imgsz", "96", "--extra-passes", "64:0.67:0.4", "--int8", "--calib",
                        str(train)]) == 0
    files = (w, w.with_suffix(".onnx"), tmp_path / "det-int8.onnx")
    assert [load_detector(f, threads=1).imgsz if f.suffix == ".onnx" else load_detector(f).imgsz
            for f in files] == [96, 96, 96]
    assert load_detector(files[2], 64, threads=1).imgsz == load_detector(w, 64).imgsz == 64
    assert torch.load(w, map_location="cpu", weights_only=False)["train_args"]["imgsz"] == 128  # what it learned at


def test_int8_calibration_at_another_main_size_than_the_one_it_runs_at(pipeline, tmp_path):
    """--calib-imgsz: the int8 copy runs at --imgsz but its ranges are those of a calibration at the other size
    (the same initializers as an export that runs at that size), unlike a calibration at the size it runs."""
    import shutil
    import onnx
    from onnx import numpy_helper
    from scripts import export
    from scripts.detectors import load_detector
    train = str(pipeline["root"] / "data" / "yolo" / "train")

    def exported(name, *options):
        w = tmp_path / name / "det.pt"
        w.parent.mkdir()
        shutil.copy(pipeline["det"], w)
        assert export.main([str(w), *options, "--extra-passes", "64:0.67:0.4", "--int8", "--calib", train]) == 0
        int8 = w.parent / "det-int8.onnx"
        ranges = {i.name: numpy_helper.to_array(i).tobytes() for i in onnx.load(str(int8)).graph.initializer}
        return load_detector(int8, threads=1).imgsz, ranges
    at_128 = exported("a", "--imgsz", "128")
    run_96_calibrated_128 = exported("b", "--imgsz", "96", "--calib-imgsz", "128")
    at_96 = exported("c", "--imgsz", "96")
    assert (at_128[0], run_96_calibrated_128[0], at_96[0]) == (128, 96, 96)
    assert run_96_calibrated_128[1] == at_128[1]
    assert run_96_calibrated_128[1] != at_96[1]


def test_a_grey_recipe_trains_a_detector_that_sees_grey_in_predict_eval_and_onnx(pipeline, tmp_path, monkeypatch):
    """`input: grey`: the run's checkpoints say so, the ONNX export carries it, and both runtimes drop colour
    before the network (a colour photo and its grey copy give the same detections); a colour detector does not."""
    import cv2
    import yaml
    from converters.crops import grey_bgr
    from scripts import export, train_recipe
    from scripts.detectors import load_detector
    monkeypatch.setattr(train_recipe, "PROJECT_ROOT", tmp_path)
    monkeypatch.setattr(train_recipe, "RUNS_DIR", tmp_path / "runs")
    (tmp_path / "a").symlink_to(pipeline["root"] / "data" / "yolo" / "train")
    recipe = dict(name="grey", task="detect", init=str(pipeline["det"]), imgsz=96, input="grey", soften=0.5,
                  train=[dict(path="a")], val=[dict(path="a")], hyp=dict(epochs=1, batch=8, workers=0, plots=False))
    (tmp_path / "grey.yaml").write_text(yaml.safe_dump(recipe))
    assert train_recipe.main(["--recipe", str(tmp_path / "grey.yaml")]) == 0
    weights = tmp_path / "runs" / "ultralytics" / "grey" / "weights"
    for name in ("best.pt", "last.pt"):
        assert torch.load(weights / name, map_location="cpu", weights_only=False)[ultra.INPUT_KEY] == "grey"
    assert export.main([str(weights / "best.pt")]) == 0
    image = cv2.imread(str(sorted((pipeline["root"] / "data" / "yolo" / "val").glob("*.jpg"))[0]))
    image = cv2.resize(image, (96, 96))  # at the input size: the letterbox copies it (no resampling to round)
    image[..., 2] = 255 - image[..., 2]  # a colour photo: grey would change it

    def every_anchor(det, img):  # boxes and class scores of every anchor, before any threshold
        boxes, scores = det.pass_outputs(img, det.imgsz)
        return np.c_[boxes, scores.T]

    def network_input(det, img):  # what the network itself is given
        seen, plain = [], det.raw_batch
        det.raw_batch = lambda x: (seen.append(x), plain(x))[1]
        det(img, 0.25, 0.7)
        det.raw_batch = plain
        return seen[0][0]
    for det in (load_detector(weights / "best.pt"), load_detector(weights / "best.onnx", threads=1)):
        assert det.grey and det.imgsz == 96
        x = network_input(det, image)
        assert np.array_equal(x[0], x[1]) and np.array_equal(x[1], x[2])
        assert np.allclose(every_anchor(det, image), every_anchor(det, grey_bgr(image)), atol=1e-5)
    colour = load_detector(pipeline["det"])
    x = network_input(colour, image)
    assert not colour.grey and np.abs(x[0] - x[2]).max() > 0.5


def test_a_recipe_with_an_unknown_input_or_soften_is_refused(tmp_path):
    import yaml
    from converters.errors import EmoDetError
    from scripts.train_recipe import load_recipe
    base = dict(name="x", task="detect", init="x.pt", imgsz=96, train=[], val=[])
    for extra, message in ((dict(input="hsv"), "input must be colour or grey, not 'hsv'"),
                           (dict(soften=2), "soften is a share of the training images, 0 to 1, not 2")):
        (tmp_path / "r.yaml").write_text(yaml.safe_dump(base | extra))
        with pytest.raises(EmoDetError, match=message):
            load_recipe(tmp_path / "r.yaml")
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(base | dict(input="grey", soften=0.5)))
    assert load_recipe(tmp_path / "r.yaml")["input"] == "grey"


def test_an_int8_detector_copy_keeps_its_metadata_and_tracks_the_float_one(pipeline, tmp_path):
    """export --int8 on a detector: calibrated on training photos, its decoding tail left in float; loads with the
    float export's input size and names and gives nearly the same boxes and scores on photos it was not
    calibrated on."""
    import shutil
    import cv2
    import onnx
    from scripts import export
    from scripts.detectors import load_detector
    w = tmp_path / "det.pt"
    shutil.copy(pipeline["det"], w)
    yolo = pipeline["root"] / "data" / "yolo"
    assert export.main([str(w), "--int8", "--calib", str(yolo / "train")]) == 0
    q = tmp_path / "det-int8.onnx"
    ops = [n.op_type for n in onnx.load(str(q)).graph.node]
    assert ops.count("QuantizeLinear") > 10 and q.stat().st_size < w.with_suffix(".onnx").stat().st_size
    graph = onnx.load(str(q)).graph
    dequantized = {o for n in graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    convs = {n.name: n for n in graph.node if n.op_type == "Conv"}
    nodes = {n.name: n for n in graph.node}
    dfl = [name for name in export.detector_head_tail(w.with_suffix(".onnx")) if name.endswith("dfl/MatMul")]
    assert dfl and nodes[dfl[0]].input[1] not in dequantized  # the box decoder's weights stay float
    assert sum(c.input[1] in dequantized for c in convs.values()) > 10  # the network's are int8
    ref, int8 = load_detector(w.with_suffix(".onnx"), threads=1), load_detector(q, threads=1)
    assert (int8.imgsz, int8.names, int8.grey) == (ref.imgsz, ref.names, ref.grey)
    for path in sorted((yolo / "val").glob("*.jpg"))[:3]:
        image = cv2.imread(str(path))
        a, b = (det.pass_outputs(image, det.imgsz) for det in (ref, int8))
        assert np.median(np.abs(a[0] - b[0])) < 2.0  # boxes in pixels
        assert np.corrcoef(a[1].ravel(), b[1].ravel())[0, 1] > 0.9  # class scores
    with pytest.raises(Exception, match="--calib"):
        export.main([str(w), "--int8"])


def test_a_fixed_size_onnx_detector_refuses_another_input_size_in_one_line(pipeline, tmp_path):
    """A static ONNX export runs at its own size only: asking for another is an error, not silently ignored."""
    import shutil
    from converters.errors import EmoDetError
    from scripts import export
    from scripts.detectors import load_detector
    w = tmp_path / "det.pt"
    shutil.copy(pipeline["det"], w)
    assert export.main([str(w)]) == 0
    assert load_detector(w.with_suffix(".onnx")).imgsz == load_detector(w.with_suffix(".onnx"), 128).imgsz == 128
    with pytest.raises(EmoDetError, match="exported for 128 px input, not 160"):
        load_detector(w.with_suffix(".onnx"), 160)
