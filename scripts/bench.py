"""`make bench`: measure, then write BENCHMARKS.md from every part measured so far (results/bench/*.json).

Parts: convert (our converter vs a plain single-process OpenCV loop on the same rows, side by side),
fer2013 (full FER2013 + FER+ conversion time), classifier (PrivateTest accuracy and faces/s of shipped models),
transfer (classifier-initialised vs scratch detector), scenes (one-stage vs two-stage on real-face scenes),
demo-ultralytics / demo-darknet (`make demo` end to end), convert-scale (AffectNet-sized photos: memory, throughput
against the compute ceiling, resume after kill -9; scripts/bench_scale.py).
`python -m scripts.bench --parts convert` runs one part; BENCHMARKS.md always lists all parts measured.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from converters.errors import run_cli
from converters.settings import DEFAULT_DETECTOR, FER2013_BACKBONE, DEFAULT_CLASSIFIER, PROJECT_ROOT, RESULTS_DIR
from eval.results import append_result

BENCH_DIR = RESULTS_DIR / "bench"


def machine_info() -> dict:
    import torch
    cpu = "unknown"
    try:
        cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    try:
        import onnxruntime
        ort = onnxruntime.__version__
    except ImportError:
        ort = "not installed"
    return dict(cpu=cpu, cores=os.cpu_count(), python=platform.python_version(), numpy=np.__version__,
                opencv=cv2.__version__, torch=torch.__version__, onnxruntime=ort, date=time.strftime("%Y-%m-%d %H:%M"))


def machine_line(m: dict) -> str:
    """Where a part's times were measured: the CPU model names the machine (the shared machines this runs on
    change from run to run, and the same network's milliseconds with them)."""
    return (f"Measured {m['date']} on {m['cpu']}, {m['cores']} cores; ONNX Runtime {m.get('onnxruntime', '?')}, "
            f"torch {m['torch']}, OpenCV {m['opencv']}.")


def plain_loop(csv_path: Path, images: Path, out: Path, size: int = 48) -> float:
    """The baseline users write: parse the CSV, then per row read the full image, crop, resize, write a PNG;
    one process, no validation."""
    import csv
    t0 = time.perf_counter()
    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))[1:]
    for k, row in enumerate(rows):
        img = cv2.imread(str(images / row[0]))
        x, y, w, h = (int(float(v)) for v in row[1:5])
        crop = cv2.resize(img[y:y + h, x:x + w], (size, size))
        cv2.imwrite(str(out / f"{k}.png"), crop)
    return time.perf_counter() - t0


def _timed_convert(sample: Path, out: Path, workers: int) -> float:
    from converters.convert import convert_affectnet
    from converters.pipeline import ConvertOptions
    opts = ConvertOptions(sizes=(48,), formats=("crops", "yolo"), workers=workers, progress=False)
    t0 = time.perf_counter()
    convert_affectnet(sample, ["training"], out, opts)  # reads and validates the CSV, then converts
    return time.perf_counter() - t0


def bench_convert(n_images: int, side: int, workers: int, rounds: int = 2) -> dict:
    """Both pipelines on the same rows, alternating, `rounds` times each; the best time of each counts.
    Dirty pages are flushed before every run so neither pays for the other's writes."""
    from converters.affectnet import read_affectnet
    from converters.synthetic import generate_sample
    tmp = Path(tempfile.mkdtemp(prefix="emodet-bench-", dir=PROJECT_ROOT / "runs" if (PROJECT_ROOT / "runs").is_dir() else None))
    try:
        sample = tmp / "affectnet"
        generate_sample(sample, n_images, 0, seed=123, size=(side, side), workers=workers, progress=False)
        records = read_affectnet(sample / "training.csv").records
        for image in {r.image for r in records}:  # warm the page cache for both alike
            image.read_bytes()
        plain, ours = [], []
        for k in range(rounds):
            out = tmp / f"plain{k}"
            out.mkdir()
            os.sync()
            plain.append(plain_loop(sample / "training.csv", sample / "Manually_Annotated_Images", out))
            os.sync()
            ours.append(_timed_convert(sample, tmp / f"ours{k}", workers))
        plain_s, ours_s = min(plain), min(ours)
        n_img = len({r.image for r in records})
        return dict(images=n_img, faces=len(records), side=side, workers=workers, rounds=rounds,
                    plain_runs=plain, ours_runs=ours,
                    plain_seconds=plain_s, plain_images_per_s=n_img / plain_s, plain_faces_per_s=len(records) / plain_s,
                    ours_seconds=ours_s, ours_images_per_s=n_img / ours_s, ours_faces_per_s=len(records) / ours_s,
                    speedup=plain_s / ours_s,
                    command=f"python -m scripts.bench --parts convert --images {n_img} --side {side}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def bench_fer2013() -> dict:
    from converters.fer2013 import main as fer_main
    from converters.settings import fer2013_dir
    if not (fer2013_dir() / "fer2013.csv.gz").exists():
        return dict(skipped=f"no FER2013 at {fer2013_dir()}")
    tmp = Path(tempfile.mkdtemp(prefix="emodet-bench-fer-"))
    try:
        t0 = time.perf_counter()
        fer_main(["--out", str(tmp), "--quiet"])
        return dict(seconds=time.perf_counter() - t0, rows=35710,
                    command="python -m converters.fer2013 --out <dir> (FER2013 + FER+, 48 px crops, Darknet set, HDF5)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def inference_speed(onnx_path: Path, faces: np.ndarray, batch: int, threads: int, repeats: int = 3,
                    tta: str = "none") -> float:
    """Milliseconds per face with ONNX Runtime at a batch size and thread count (best of `repeats`), preprocessing
    and the TTA views included."""
    from scripts.classifiers import load_classifier
    clf = load_classifier(onnx_path, threads=threads)
    clf.scores(faces[:batch], tta)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        for i in range(0, len(faces), batch):
            clf.scores(faces[i:i + batch], tta)
        best = min(best, (time.perf_counter() - t0) / len(faces) * 1000)
    return best


def bench_classifier(models: list[Path]) -> dict:
    """PrivateTest top-1 (centre crop, flip and ten-crop TTA) and ONNX Runtime speed of each FER model."""
    from scripts.scoring import ensure_default_data, evaluate_classifier
    from converters.settings import FER2013_TABLE as DEFAULT_DATA
    from scripts.torch_classifier import TTA
    data = ensure_default_data(DEFAULT_DATA)
    rows = []
    for onnx_path in models:
        row = dict(model=onnx_path.name)
        for tta in TTA:
            m = evaluate_classifier(onnx_path, data, "test", tta=tta)
            row[f"top1_{tta}"] = m["top1"]
            row[f"top2_{tta}"] = m["topk"]
            row[f"macro_f1_{tta}"] = m["macro_f1"]
        from eval.classify_data import load_faces
        faces = load_faces(data, "test")[0][:512]
        row["ms_b1_t1"] = inference_speed(onnx_path, faces[:200], 1, 1)
        row["ms_b1_t1_flip"] = inference_speed(onnx_path, faces[:200], 1, 1, tta="flip")
        row["ms_b64_t2"] = inference_speed(onnx_path, faces, 64, 2)
        rows.append(row)
        import onnx
        params = sum(int(np.prod(t.dims)) for t in onnx.load(str(onnx_path)).graph.initializer)
        for tta in TTA:
            append_result("fer2013", dict(model=onnx_path.stem, split="PrivateTest", tta=tta, top1=row[f"top1_{tta}"],
                                          top2=row[f"top2_{tta}"], macro_f1=row[f"macro_f1_{tta}"], params=params,
                                          img_size=40, command=f"python eval/confusion.py --split PrivateTest "
                                          f"--weights weights/{onnx_path.name} --tta {tta}"))
    lines = ["FER2013 PrivateTest (3,573 faces; models selected on PublicTest only; 7 classes). Speed: ONNX Runtime "
             "on this CPU, ms per face including preprocessing (batch 1 on 1 thread; batch 64 on 2 threads), centre "
             "crop; flip = centre crop + its mirror image, run as one batch of 2 per face.", "",
             "| model | top-1 | top-2 | macro F1 | top-1 flip | top-1 10-crop | ms/face b1 t1 | faces/s b1 t1 | "
             "ms/face b1 t1 flip | ms/face b64 t2 | faces/s b64 t2 |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['top1_none']:.4f} | {r['top2_none']:.4f} | {r['macro_f1_none']:.4f} | "
                     f"{r['top1_flip']:.4f} | {r['top1_tencrop']:.4f} | {r['ms_b1_t1']:.3f} | "
                     f"{1000 / r['ms_b1_t1']:.0f} | {r['ms_b1_t1_flip']:.3f} | {r['ms_b64_t2']:.3f} | "
                     f"{1000 / r['ms_b64_t2']:.0f} |")
    lines += ["", "Command: `python -m scripts.bench --parts classifier` (evaluation: `python eval/confusion.py "
              "--split PrivateTest --weights weights/<model>.onnx [--tta flip|tencrop]`)."]
    return dict(rows=rows, markdown="\n".join(lines))


def _run_log(run: Path) -> tuple[list[dict], dict]:
    """An Ultralytics run's results.csv rows (one per epoch, cumulative `time` column) and its args.yaml."""
    import csv

    import yaml
    return list(csv.DictReader((run / "results.csv").open())), yaml.safe_load((run / "args.yaml").read_text())


def _epoch_seconds(rows: list[dict], args: dict) -> float:
    """Mean wall-clock seconds per complete epoch of a run (its _run_log). A run given a time budget (`time` in its
    args) stops mid-epoch when the budget is spent, so its last row is a part of an epoch and is left out (counted
    whole, it made session 8's 17.9 images/s look 4 % faster)."""
    if _cut_by_time(args) and len(rows) > 1:
        rows = rows[:-1]
    return float(rows[-1]["time"]) / len(rows)


def _cut_by_time(args: dict) -> bool:
    """Whether an Ultralytics run (its args.yaml) had a time budget, which Ultralytics spends to the end: it sizes
    the epoch count to the budget and stops inside the epoch in which the budget runs out."""
    return bool(args.get("time"))


def bench_transfer(epochs: int, cls_epochs: int, seed: int = 0) -> dict:
    """Ultralytics on the synthetic sample: training speed of the -cls and detect models, and a detector
    initialised from the classifier backbone vs one from scratch, equal epochs and seed, scored by eval/."""
    from converters.convert import convert_affectnet
    from converters.labels import class_names
    from converters.pipeline import ConvertOptions
    from converters.synthetic import generate_sample
    from eval.detection_report import evaluate_folders
    from scripts import ultra
    from scripts.scoring import write_scoring_predictions
    root = PROJECT_ROOT / "runs" / "bench-transfer"
    shutil.rmtree(root, ignore_errors=True)
    generate_sample(root / "sample", 240, 60, seed=seed, progress=False)
    convert_affectnet(root / "sample", ["training", "validation"], root / "data",
                      ConvertOptions(sizes=(48,), formats=("crops", "yolo"), progress=False))
    n_cls = len(list((root / "data" / "crops" / "48" / "train").glob("*/*.png")))
    n_det = len(list((root / "data" / "yolo" / "train").glob("*.jpg")))
    cls = ultra.train_classifier(root / "data" / "crops" / "48", "v8n", cls_epochs, seed=seed, project=root, name="cls")
    model, report = ultra.transfer_backbone(cls, "v8n", 7)
    init = ultra.save_detection_init(model, class_names(7), root / "init.pt")
    val = sorted((root / "data" / "yolo" / "val").glob("*.jpg"))
    out = dict(ultralytics=ultra.version(), epochs=epochs, cls_epochs=cls_epochs, seed=seed, moved=len(report.moved),
               cls_images_per_s=n_cls / _epoch_seconds(*_run_log(root / "cls")), train_images=n_det)
    for name, start in (("scratch", "v8n"), ("from_cls", init)):
        best = ultra.train_detector(root / "data" / "yolo" / "data.yaml", start, epochs, seed=seed, project=root,
                                    name=name)
        pred = write_scoring_predictions(best, val, root / f"pred_{name}", ultra.defaults("detect")["imgsz"])
        for style in ("darknet", "ultralytics"):
            out[f"{name}_map50_{style}"] = evaluate_folders(root / "data" / "yolo" / "val", pred, style)["map50"]
        out[f"{name}_det_images_per_s"] = n_det / _epoch_seconds(*_run_log(root / name))
    lines = [f"Synthetic sample (240 train / 60 val images, seed {seed}), Ultralytics {out['ultralytics']}, v8n, 256 px, "
             f"{epochs} epochs each, same seed; mAP@0.5 on the val split by `eval/detection.py`.", "",
             "| detector start | mAP@0.5 (Darknet style) | mAP@0.5 (Ultralytics style) | train images/s |",
             "|---|---:|---:|---:|"]
    for name, label in (("scratch", "from scratch (yolov8n.yaml)"),
                        ("from_cls", f"classifier backbone ({out['moved']} tensors from v8n-cls, {cls_epochs} epochs)")):
        lines.append(f"| {label} | {out[f'{name}_map50_darknet']:.3f} | {out[f'{name}_map50_ultralytics']:.3f} | "
                     f"{out[f'{name}_det_images_per_s']:.1f} |")
    lines += ["", f"Classifier training (v8n-cls, 64 px): {out['cls_images_per_s']:.0f} images/s. Images/s include "
              f"validation each epoch. Command: `python -m scripts.bench --parts transfer --det-epochs {epochs}`."]
    out["markdown"] = "\n".join(lines)
    return out


def bench_demo(backend: str, reuse: bool) -> dict:
    """`make demo [BACKEND=darknet]` end to end (or, with reuse, the summary its last run left in runs/)."""
    out = PROJECT_ROOT / "runs" / f"demo-{backend}"
    summary = out / "summary.json"
    if not (reuse and summary.exists()):
        from scripts.demo import main as demo_main
        demo_main(["--backend", backend, "--out", str(out)])
    s = json.loads(summary.read_text())
    d = s["detector"]["darknet"]
    c = s["classifier"]
    lines = [f"`make demo BACKEND={backend}` on the synthetic sample (240 train / 60 val images), {s['engine']}: "
             f"total **{sum(s['seconds'].values()) / 60:.1f} min** on 2 cores.", "",
             "| stage | seconds |", "|---|---:|"] + [f"| {k} | {v:.0f} |" for k, v in s["seconds"].items()] + [
             "", f"Classifier ({c['model']}): val top-1 {c['top1']:.3f}, top-2 {c['top2']:.3f}. Detector: mAP@0.5 "
             f"{d['map50']:.3f}, mAP@0.5:0.95 {d['map50_95']:.3f}, P {d['precision']:.3f}, R {d['recall']:.3f}, "
             f"F1 {d['f1']:.3f} at conf {d['conf']:.2f} (Darknet style); Ultralytics style mAP@0.5 "
             f"{s['detector']['ultralytics']['map50']:.3f}."]
    if dm := s["detector"].get("detector_map"):
        lines[-1] += (f" The engine's own `detector map` on the same weights and validation list: mAP@0.5 "
                      f"{dm['map50']:.4f} against our evaluator's {d['map50']:.4f} (Darknet style on the boxes `detector "
                      f"test` writes, TP counted in the engine's box order); TP/FP/FN at conf 0.25 "
                      f"{dm.get('tp')}/{dm.get('fp')}/{dm.get('fn')} "
                      f"against {d.get('tp')}/{d.get('fp')}/{d.get('fn')}.")
    if scratch := s["detector"].get("darknet_scratch"):
        lines[-1] += (f" The same detector from scratch, trained side by side for the same iterations: mAP@0.5 "
                      f"{scratch['map50']:.3f}.")
    return dict(s, markdown="\n".join(lines))


SCENES_DET = "scenes-det"


def _scene_rows(metrics: dict) -> dict:
    keep = ("map50", "map50_95", "precision", "recall", "f1", "conf", "agnostic_recall50", "ms_per_image")
    return {k: metrics[k] for k in keep} | {"ap50": {n: c["ap50"] for n, c in metrics["per_class"].items()}}


SIZE_EDGES = (0, 32, 48, 64, 96, 10_000)  # face width in pixels at the detector's input


def _face_size_rows(gt: Path, preds: dict[str, Path], imgsz: int) -> dict[str, list[dict]]:
    """eval.detection_metrics.by_face_size of each method's predictions (name -> folder), face sizes as the
    detector saw them (letterboxed to imgsz); the ground truth is read once for all."""
    from eval.detection_io import image_sizes, read_ground_truth, read_yolo_predictions
    from eval.detection_metrics import by_face_size
    gts, seen = read_ground_truth(gt), {k: imgsz * w / max(w, h) for k, (w, h) in image_sizes(gt).items()}
    return {name: by_face_size(gts, read_yolo_predictions(folder), seen, SIZE_EDGES) for name, folder in preds.items()}


def _soft_target_trainer(soft: Path, yolo_train: Path):
    """The detector trainer whose class loss uses `soft` (scripts/distill.py's CSV over the FER2013 table's
    Training faces) for the scene faces (data/scenes' sources)."""
    from converters.settings import DATA_DIR, FER2013_TABLE
    from scripts import det_distill
    from scripts.torch_classifier import load_soft_targets
    table_index = det_distill.fer_rows_to_table_index(FER2013_TABLE)
    rows = det_distill.scene_soft_rows(DATA_DIR / "scenes", yolo_train, table_index)
    return det_distill.soft_trainer(rows, load_soft_targets(Path(soft), len(table_index)))


RECIPE_FILE = "emodet-recipe.json"  # beside a scenes detector run: what Ultralytics' args.yaml cannot say
SCENES_RECIPE = PROJECT_ROOT / "cfg" / "recipes" / "scenes-det.yaml"


def train_scenes_detector(yolo: Path, name: str = SCENES_DET, hours: float | None = None, imgsz: int | None = None,
                          backbone: Path | None = None, freeze: int | None = None, soft: Path | None = None,
                          cls_pw: float | None = None, close_mosaic: int | None = None, model: str | None = None) -> Path:
    """The scenes bench's one-stage detector: cfg/recipes/scenes-det.yaml, with any field the bench was given
    instead (an experiment); writes what it trained beside the run and returns the run folder."""
    import json

    from scripts import train_recipe
    recipe = train_recipe.load_recipe(SCENES_RECIPE)
    hyp = dict(recipe["hyp"]) | {k: v for k, v in (("cls_pw", cls_pw), ("close_mosaic", close_mosaic)) if v is not None}
    given = dict(imgsz=imgsz, freeze=freeze, model=model, init_backbone=backbone and str(backbone))
    recipe = recipe | {k: v for k, v in given.items() if v is not None} | {"hyp": hyp}
    run = train_recipe.train_detector_recipe(recipe, name, hours,
                                             trainer=soft and _soft_target_trainer(soft, yolo / "train"))
    where = (PROJECT_ROOT / recipe["init_backbone"]).resolve()
    record = dict(backbone=str(where.relative_to(PROJECT_ROOT) if where.is_relative_to(PROJECT_ROOT) else where),
                  model=recipe.get("model"), soft=soft and str(soft),
                  train_images=len(list((yolo / "train").glob("*.jpg"))))
    (run / RECIPE_FILE).write_text(json.dumps(record, indent=1))
    return run


def _scenes_command(trained: dict, n_train: int) -> str:
    """The commands that compose the scenes and train the detector as recorded: the bench's options name only
    what differs from cfg/recipes/scenes-det.yaml."""
    import yaml
    spec = yaml.safe_load(SCENES_RECIPE.read_text())
    base = dict(spec["hyp"], freeze=spec.get("freeze"), model=spec.get("model"))
    backbone = trained.get("backbone") or spec["init_backbone"]
    opts = "".join([f" --backbone {backbone}" if Path(backbone).name != Path(spec["init_backbone"]).name else "",
                    *(f" --{k.replace('_', '-')} {trained[k]}" for k in ("model", "freeze", "cls_pw", "close_mosaic")
                      if trained.get(k) is not None and trained.get(k) != base.get(k)),
                    f" --soft {trained['soft']}" if trained.get("soft") else ""])
    return f"`make scenes SCENES_TRAIN={n_train}`, then `python -m scripts.bench --parts scenes{opts}`"


def bench_scenes(reuse: bool, hours: float | None = None, imgsz: int | None = None, backbone: Path | None = None,
                 freeze: int | None = None, soft: Path | None = None, cls_pw: float | None = None,
                 close_mosaic: int | None = None, model: str | None = None) -> dict:
    """Real FER faces in composed scenes (`make scenes`): the one-stage detector (train_scenes_detector) vs Haar +
    the shipped FER classifier, both scored on the test scenes by the same code. With `reuse`, weights already
    trained under runs/ultralytics are scored again."""
    import json

    from converters.settings import DATA_DIR, RUNS_DIR
    from scripts import two_stage, ultra
    from scripts.detectors import OnnxDetector
    from scripts.scoring import score_detector
    yolo = DATA_DIR / "scenes-converted" / "yolo"
    if not (yolo / "test").is_dir():
        return dict(skipped=f"{yolo}: no scenes; run `make scenes` and convert them (see README)")
    det_run = RUNS_DIR / "ultralytics" / SCENES_DET
    cv2.setNumThreads(1)  # the Haar cascade is timed on one thread, like both ONNX models
    if not (reuse and (det_run / "weights" / "best.pt").exists()):
        train_scenes_detector(yolo, SCENES_DET, hours, imgsz, backbone, freeze, soft, cls_pw, close_mosaic, model)
    rows, trained = _run_log(det_run)  # as trained, also with reuse
    imgsz, frozen = int(trained["imgsz"]), trained.get("freeze") or 0
    recipe = json.loads((det_run / RECIPE_FILE).read_text()) if (det_run / RECIPE_FILE).exists() else {}
    n_train = recipe.get("train_images") or len(list((yolo / "train").glob("*.jpg")))  # as trained, if recorded
    onnx = ultra.export_onnx(det_run / "weights" / "best.pt", imgsz)
    scored = {name: RUNS_DIR / "scenes-eval" / folder
              for name, folder in (("one_stage", "one-stage"), ("one_stage_flip", "one-stage-flip"),
                                   ("two_stage", "two-stage"), ("hybrid", "detector-faces"))}
    one, one_flip = (score_detector(OnnxDetector(onnx, imgsz, threads=1, multi_label=True, flip=flip), yolo / "test",
                                    scored[name]) for name, flip in (("one_stage", False), ("one_stage_flip", True)))
    fit = two_stage.fit_on_folder(yolo / "val")
    two = score_detector(two_stage.TwoStageDetector(two_stage.DEFAULT_CLASSIFIER, fit, threads=1, multi_label=True),
                         yolo / "test", scored["two_stage"])
    faces = two_stage.DetectorFaces(OnnxDetector(onnx, imgsz, threads=1))
    hybrid = score_detector(two_stage.TwoStageDetector(two_stage.DEFAULT_CLASSIFIER, faces=faces, threads=1,
                                                       multi_label=True),
                            yolo / "test", scored["hybrid"])
    out = dict(train_minutes=float(rows[-1]["time"]) / 60, epochs=len(rows), train_images=n_train, imgsz=imgsz,
               det_images_per_s=n_train / _epoch_seconds(rows, trained), box_fit=fit.__dict__,
               test_images=one["images"], ultralytics=ultra.version(), frozen_layers=frozen)
    clf = two_stage.DEFAULT_CLASSIFIER.stem
    start = f"backbone from {Path(recipe.get('backbone') or FER2013_BACKBONE).stem}" + (
        f", layers 0-{frozen - 1} frozen" if frozen else "") + (
        f", class loss on distillation targets ({Path(recipe['soft']).name})" if recipe.get("soft") else "") + (
        f", class weights ** {trained['cls_pw']}" if trained.get("cls_pw") else "")
    out["recipe"] = recipe | {"cls_pw": trained.get("cls_pw", 0.0), "close_mosaic": trained.get("close_mosaic"),
                              "freeze": frozen}
    family = {"v8n": "YOLOv8n", "v8s": "YOLOv8s", "vggdet": "vggdet (VGG stem + YOLOv8n neck and head)"}.get(
        recipe.get("model", "v8n"), recipe.get("model"))
    methods = {"one_stage": (one, f"one-stage: {family} {imgsz} px, {start}"),
               "one_stage_flip": (one_flip, "the same + flip test-time augmentation (outputs on the image and its "
                                            "mirror image averaged, `--flip`)"),
               "two_stage": (two, f"two-stage: OpenCV Haar (box fit on val) + {clf}"),
               "hybrid": (hybrid, f"two-stage with the one-stage detector's boxes (emotion ignored) + {clf}")}
    by_size = _face_size_rows(yolo / "test", {name: folder / "labels" for name, folder in scored.items()}, imgsz)
    for name, (r, _) in methods.items():
        out[name] = {style: _scene_rows(r[style]) for style in ("darknet", "ultralytics")} | {
            "by_face_size": by_size[name]}
    names = list(out["one_stage"]["darknet"]["ap50"])
    lines = [f"FER-scenes (`make scenes`: real FER2013 faces pasted into 320-640 px scenes, Training faces -> "
             f"{n_train} train scenes, PublicTest -> val, PrivateTest -> {one['images']} test scenes). Scored on the "
             f"**test** scenes by `eval/detection.py`'s code, every method scored alike: each box keeps every class "
             f"above the threshold (as Ultralytics' val and Darknet's `detector valid` do; our mAP matches "
             f"Ultralytics' val on the same weights to 0.001, tests/test_two_stage.py); face recall = any-class "
             f"recall at IoU 0.5 and conf 0.25; ms per image = model time on one thread (ONNX Runtime; Haar with "
             f"OpenCV on one thread), image decoding excluded.", "",
             "| method | mAP@0.5 (Darknet style) | mAP@0.5 (Ultralytics style) | mAP@0.5:0.95 | face recall@0.5 "
             "(any class) | P / R / F1 at 0.25 | ms/image |", "|---|---:|---:|---:|---:|---|---:|"]
    for name, (_, label) in methods.items():
        d, u = out[name]["darknet"], out[name]["ultralytics"]
        lines.append(f"| {label} | {d['map50']:.3f} | {u['map50']:.3f} | {d['map50_95']:.3f} | "
                     f"{d['agnostic_recall50']:.3f} | {d['precision']:.2f} / {d['recall']:.2f} / {d['f1']:.2f} | "
                     f"{d['ms_per_image']:.1f} |")
    lines += ["", "Per-class AP@0.5 (Darknet style):", "", "| method | " + " | ".join(names) + " |",
              "|---|" + "---:|" * len(names)]
    for name in methods:
        lines.append(f"| {name.replace('_', '-')} | " + " | ".join(f"{out[name]['darknet']['ap50'][n]:.3f}"
                                                               for n in names) + " |")
    bins = out["one_stage"]["by_face_size"]
    lines += ["", f"By face size (width in pixels at the detector's {imgsz} px input; test faces per bin: "
              + ", ".join(str(b["faces"]) for b in bins) + "): share of faces whose best detection at conf 0.25 "
              "and IoU 0.5 has the right emotion (share found at all in brackets).", "",
              "| method | " + " | ".join(f"{b['lo']:.0f}-{b['hi']:.0f} px" if b["hi"] < 10_000 else
                                         f">= {b['lo']:.0f} px" for b in bins) + " |",
              "|---|" + "---:|" * len(bins)]
    for name in methods:
        lines.append(f"| {name.replace('_', '-')} | " + " | ".join(f"{b['correct']:.2f} ({b['found']:.2f})"
                                                               for b in out[name]["by_face_size"]) + " |")
    cut = " (the last cut short by the time budget)" if _cut_by_time(trained) else ""
    lines += ["", f"One-stage training: {out['epochs']} epochs{cut} in {out['train_minutes']:.0f} min "
              f"({out['det_images_per_s']:.1f} train images/s over the complete epochs, incl. validation; "
              f"Ultralytics {out['ultralytics']} "
              f"trains on one torch thread here). Haar box fit (val): scale {fit.scale:.3f} from {fit.pairs} faces. "
              f"Command: {_scenes_command(out['recipe'], n_train)} (`--reuse` scores the last trained detector)."]
    out["markdown"] = "\n".join(lines)
    return out


def save(part: str, result: dict) -> None:
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    result = dict(result, machine=machine_info())
    (BENCH_DIR / f"{part}.json").write_text(json.dumps(result, indent=1))


def benchmarks_markdown() -> str:
    parts = {p.stem: json.loads(p.read_text()) for p in sorted(BENCH_DIR.glob("*.json"))}
    lines = ["# Benchmarks", "", "Written by `make bench` (`python -m scripts.bench`); every row names its command. "
             "Ratios are measured side by side in one run; the machine is shared, so absolute figures are noisy.", ""]
    if c := parts.get("convert"):
        m = c["machine"]
        lines += ["## AffectNet-format conversion: 48 px crops + YOLO labels", "",
                  f"{c['images']} synthetic AffectNet-format images of {c['side']}x{c['side']} px, {c['faces']} faces; "
                  f"{m['cpu']}, {m['cores']} cores, OpenCV {m['opencv']}, measured {m['date']}.", "",
                  "| pipeline | seconds | images/s | faces/s |", "|---|---:|---:|---:|",
                  f"| plain loop (1 process: csv.reader, then per row imread -> crop -> resize -> imwrite) | {c['plain_seconds']:.1f} | "
                  f"{c['plain_images_per_s']:.0f} | {c['plain_faces_per_s']:.0f} |",
                  f"| `converters.convert` (validating reader, {c['workers']} processes, reduced JPEG decoding, one decode "
                  f"per image, atomic writes, + YOLO set) | {c['ours_seconds']:.1f} | {c['ours_images_per_s']:.0f} | {c['ours_faces_per_s']:.0f} |",
                  "", f"Best of {c.get('rounds', 1)} alternating runs each. **Speed-up: {c['speedup']:.1f}x** (target >= 5x). "
                  f"Command: `{c['command']}`", ""]
    if f := parts.get("fer2013"):
        lines += ["## FER2013 + FER+ conversion", ""]
        if "skipped" in f:
            lines += [f"skipped: {f['skipped']}", ""]
        else:
            lines += [f"{f['rows']} FER2013 rows -> FER2013 and FER+ (majority) sets, each with 48 px crops, a Darknet "
                      f"classifier set and the HDF5/CSV table: **{f['seconds']:.0f} s** on {f['machine']['cores']} "
                      f"cores ({f['machine']['date']}). Command: `{f['command']}`", ""]
    if extra := parts.get("classifier"):
        lines += ["## FER classifiers", "", extra.get("markdown", ""), ""]
    for backend in ("ultralytics", "darknet"):
        if extra := parts.get(f"demo-{backend}"):
            lines += [f"## make demo ({backend})", "", extra["markdown"], ""]
    if extra := parts.get("convert-scale"):
        lines += [extra["markdown"]]
    if extra := parts.get("darknet"):
        lines += ["## Darknet engines: detector training speed, AlexeyAB vs pjreddie", "",
                  extra.get("markdown") or f"skipped: {extra['skipped']}", ""]
    if extra := parts.get("darknet-csp"):
        lines += ["## Darknet: csdarknet53-omega -> partial 105 -> yolov4 (AlexeyAB)", "",
                  extra.get("markdown") or f"skipped: {extra['skipped']}", ""]
    if extra := parts.get("label-noise"):
        lines += ["## FER2013 label noise: k-fold, the label-issue finder against FER+, and its effect", "",
                  extra.get("markdown") or f"skipped: {extra['skipped']}", ""]
    if extra := parts.get("transfer"):
        lines += ["## Ultralytics: classifier-initialised vs from-scratch detector", "", extra["markdown"], ""]
    if extra := parts.get("real"):
        lines += ["## Real photos: one-stage vs two-stage vs hybrid (roboflow-emotion valid, AffectNet photos, "
                  "FER-scenes test)", "", extra["markdown"], "", machine_line(extra["machine"]), ""]
    if extra := parts.get("scenes"):
        lines += ["## Real faces: one-stage detector vs two-stage (Haar + classifier) on FER-scenes", "",
                  extra.get("markdown") or f"skipped: {extra['skipped']}", ""]
    return "\n".join(lines).rstrip() + "\n"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.bench", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--parts", nargs="+", default=["convert", "fer2013", "classifier"],
                   choices=["convert", "fer2013", "classifier", "transfer", "scenes", "real", "demo-ultralytics",
                            "demo-darknet", "darknet", "darknet-csp", "label-noise", "convert-scale", "none"])
    p.add_argument("--reuse", action="store_true",
                   help="demo parts: record the last run's summary instead of rerunning; scenes: score the last "
                        "trained detector")
    p.add_argument("--hours", type=float, default=None,
                   help="scenes part: detector training budget (default: cfg/recipes/scenes-det.yaml's)")
    p.add_argument("--imgsz", type=int, default=None,
                   help="scenes part: detector input size (default: the recipe's; with --reuse: as trained)")
    p.add_argument("--freeze", type=int, default=None, help="scenes part: keep the first N detector layers frozen "
                   "for the whole training (default: the transferred backbone, 9 layers of v8n/v8s, 16 of vggdet); "
                   "0 trains them too")
    p.add_argument("--backbone", type=Path, default=None,
                   help="scenes part: classifier that initialises the detector (default "
                        f"weights/{FER2013_BACKBONE.name})")
    p.add_argument("--model", choices=["v8n", "v8s", "vggdet"], default=None,
                   help="scenes part: detector family (default: the backbone classifier's, v8n-cls -> v8n, "
                        "v8s-cls -> v8s, vggdet-cls -> vggdet)")
    p.add_argument("--soft", type=Path, default=None,
                   help="scenes part: distillation targets of the FER2013 Training faces (scripts/distill.py's CSV) "
                        "for the detector's class loss instead of one-hot classes")
    p.add_argument("--cls-pw", type=float, default=None,
                   help="scenes part: Ultralytics' class-weight power (inverse class frequency ** cls_pw, 0 = off; "
                        "default: the recipe's)")
    p.add_argument("--close-mosaic", type=int, default=None,
                   help="scenes part: last N epochs without mosaic (default: the recipe's)")
    p.add_argument("--detector", type=Path, default=None, help="real part: detector (default: the shipped default)")
    p.add_argument("--classifier", type=Path, default=None, help="real part: classifier (default: the shipped FER model)")
    p.add_argument("--also", type=Path, nargs="*", default=[], help="real part: more classifiers for its faces table")
    p.add_argument("--det-epochs", type=int, default=30, help="transfer part: detector epochs (each start)")
    p.add_argument("--models", type=Path, nargs="+", default=None, help="ONNX FER models (default: weights/fer2013-*.onnx)")
    p.add_argument("--images", type=int, default=3000, help="synthetic images for the conversion benchmark")
    p.add_argument("--side", type=int, default=450)
    p.add_argument("--rows", type=int, default=50_000, help="convert-scale: photos at AffectNet's sizes")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if "convert" in args.parts:
        r = bench_convert(args.images, args.side, args.workers)
        save("convert", r)
        print(f"convert: plain {r['plain_images_per_s']:.0f} img/s, ours {r['ours_images_per_s']:.0f} img/s, "
              f"speed-up {r['speedup']:.1f}x")
    if "fer2013" in args.parts:
        r = bench_fer2013()
        save("fer2013", r)
        print(f"fer2013: {r.get('seconds', 0):.0f} s {r.get('skipped', '')}")
    if "classifier" in args.parts:
        from converters.settings import WEIGHTS_DIR
        models = args.models or sorted(WEIGHTS_DIR.glob("fer2013-*.onnx"))
        if models:
            r = bench_classifier(models)
            save("classifier", r)
            print(r["markdown"])
        else:
            print("classifier: no weights/fer2013-*.onnx to measure")
    for backend in ("ultralytics", "darknet"):
        if f"demo-{backend}" in args.parts:
            r = bench_demo(backend, args.reuse)
            save(f"demo-{backend}", r)
            print(r["markdown"])
    if "convert-scale" in args.parts:
        from scripts.bench_scale import bench_convert_scale
        r = bench_convert_scale(args.rows)
        save("convert-scale", r)
        print(r["markdown"])
    if "darknet" in args.parts:
        from scripts.bench_darknet import bench_darknet_speed
        r = bench_darknet_speed()
        save("darknet", r)
        print(r.get("markdown") or r["skipped"])
    if "darknet-csp" in args.parts:
        from scripts.bench_darknet import bench_csdarknet53
        r = bench_csdarknet53()
        save("darknet-csp", r)
        print(r.get("markdown") or r["skipped"])
    if "label-noise" in args.parts:
        from scripts.bench_dataset import bench_label_noise
        r = bench_label_noise(reuse=args.reuse)
        save("label-noise", r)
        print(r.get("markdown") or r["skipped"])
    if "transfer" in args.parts:
        r = bench_transfer(args.det_epochs, 30)
        save("transfer", r)
        print(r["markdown"])
    if "scenes" in args.parts:
        r = bench_scenes(args.reuse, args.hours, args.imgsz, backbone=args.backbone, freeze=args.freeze,
                         soft=args.soft, cls_pw=args.cls_pw, close_mosaic=args.close_mosaic, model=args.model)
        save("scenes", r)
        print(r.get("markdown") or r["skipped"])
    if "real" in args.parts:
        from scripts.bench_real import bench_real
        r = bench_real(args.detector or DEFAULT_DETECTOR, args.classifier or DEFAULT_CLASSIFIER, args.also)
        save("real", r)
        print(r["markdown"])
    (PROJECT_ROOT / "BENCHMARKS.md").write_text(benchmarks_markdown())
    print(f"wrote {PROJECT_ROOT / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
