"""Benchmark part `real`: emotion detection on real photos. One-stage (the detector alone) vs two-stage (OpenCV
Haar + the FER classifier) vs hybrid (the detector's boxes + the classifier) on `roboflow-emotion/valid` and the
10 AffectNet photos, every method scored by the same code: mAP@0.5 in the Darknet and Ultralytics styles, face
recall@0.5 at conf 0.25, right-emotion rate, each by face size (< 64, 64-200, >= 200 px of the original photo), and
model milliseconds per image on one thread. Also the classifiers on real face photos: macro recall on the
identity-disjoint val split of faces-in-the-wild beside FER2013 PrivateTest top-1.

Data (from the shared datasets; each skips with its reason when absent):
  make convert INPUT=$DATASETS/roboflow-emotion OUT=data/roboflow SIZES=48 FORMATS="yolo crops"
  make convert INPUT=$DATASETS/affectnet-sample OUT=data/affectnet-real SPLIT=training SIZES=48 FORMATS="yolo crops"
  make convert INPUT=$DATASETS/faces-in-the-wild OUT=data/fitw SIZES=48 FORMATS="yolo crops table"
  make scenes                                   (FER-scenes: the detector must keep what it does on FER faces)
  make convert-fer2013                          (the FER2013 table: the classifiers' PrivateTest figures)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import cv2
import numpy as np

from converters.errors import EmoDetError, run_cli
from converters.face_boxes import load_fit
from converters.io import images_in
from converters.settings import (DATA_DIR, DEFAULT_DETECTOR, DEFAULT_CLASSIFIER, FER2013_TABLE, PROJECT_ROOT,
                                 RESULTS_DIR, RUNS_DIR)

PHOTO_FIT = PROJECT_ROOT / "weights" / "haar-box-fit-photos.json"
SCENES_FIT = PROJECT_ROOT / "weights" / "haar-box-fit.json"
# set -> (YOLO folder, the Haar box fit of its box convention)
SETS = {"roboflow-valid": (DATA_DIR / "roboflow" / "yolo" / "val", PHOTO_FIT),
        "affectnet-10": (DATA_DIR / "affectnet-real" / "yolo" / "train", PHOTO_FIT),
        "fer-scenes-test": (DATA_DIR / "scenes-converted" / "yolo" / "test", SCENES_FIT)}
SIZE_EDGES = (0, 64, 200, 100_000)  # face width in pixels of the original photo
FACES_TABLE = DATA_DIR / "fitw" / "table" / "fer2013.h5"
MIN_SUPPORT = 50  # faces-in-the-wild classes with at least this many faces count in its macro recall


def _rows(metrics: dict) -> dict:
    keep = ("map50", "map50_95", "precision", "recall", "f1", "agnostic_recall50", "ms_per_image")
    return {k: metrics[k] for k in keep} | {"ap50": {n: c["ap50"] for n, c in metrics["per_class"].items()}}


def one_thread_detector(detector: Path, imgsz: int | None = None, **decode):
    """load_detector on one thread: ONNX Runtime told so (torch is set to one thread by the bench itself)."""
    from scripts.detectors import load_detector
    return load_detector(detector, imgsz, **decode, **({"threads": 1} if detector.suffix == ".onnx" else {}))


def methods(detector: Path, classifier: Path, fit: Path = PHOTO_FIT) -> dict:
    """name -> (description, detector builder); built lazily so each is timed on one thread alone."""
    from scripts import two_stage

    def one():
        return one_thread_detector(detector, multi_label=True)

    def two():
        return two_stage.TwoStageDetector(classifier, load_fit(fit), threads=1, multi_label=True)

    def hybrid():
        faces = two_stage.DetectorFaces(one_thread_detector(detector))
        return two_stage.TwoStageDetector(classifier, faces=faces, threads=1, multi_label=True)
    return {"one_stage": (f"one-stage: {detector.name}", one),
            "two_stage": (f"two-stage: OpenCV Haar ({fit.name}) + {classifier.name}", two),
            "hybrid": (f"hybrid: {detector.name}'s boxes (emotion ignored) + {classifier.name}", hybrid)}


def mean_ms(call, items: list) -> float:
    """Milliseconds per item of call(item), each item once after one untimed call on the first (which pays for
    the runtime's first-run set-up); the items are made before the clock starts."""
    call(items[0])
    t0 = time.perf_counter()
    for item in items:
        call(item)
    return 1000 * (time.perf_counter() - t0) / len(items)


def predict_ms(detector: Path, images: list[Path], conf: float = 0.25, iou: float = 0.7) -> float:
    """Milliseconds per image of the one-stage detector as `make predict` runs it (batch 1, one thread, its carried
    input size and passes, one label a box at conf 0.25): the photo in, its boxes out (mean_ms; the photos are
    read before the clock starts). The scoring run's figure is higher: it keeps every class above 0.001, so its
    decoding sorts out thousands of candidate boxes a user never asks for."""
    det = one_thread_detector(detector)
    return mean_ms(lambda photo: det(photo, conf, iou), [cv2.imread(str(p)) for p in images])


def network_ms(detector: Path, images: list[Path]) -> float:
    """Milliseconds per image of the one-stage detector's network alone at its input size (batch 1, one thread):
    the main pass's forward on each photo's letterboxed input (mean_ms; the inputs are made before the clock
    starts); no extra pass, no decoding. The project's speed target (30 ms) names the detector at its input size;
    predict_ms is what a user waits for a photo."""
    det = one_thread_detector(detector)
    return mean_ms(det.raw_batch, [det.network_input(cv2.imread(str(p)), det.imgsz)[0] for p in images])


def score_set(gt: Path, built: dict, out: Path) -> dict:
    from eval.detection_io import image_sizes, read_ground_truth, read_yolo_predictions
    from eval.detection_metrics import by_face_size
    from scripts.scoring import score_detector
    gts = read_ground_truth(gt)
    widths = {k: w for k, (w, h) in image_sizes(gt).items()}
    result = {}
    for name, (label, build) in built.items():
        r = score_detector(build(), gt, out / name)
        result[name] = {style: _rows(r[style]) for style in ("darknet", "ultralytics")} | {
            "label": label, "images": r["images"],
            "by_face_size": by_face_size(gts, read_yolo_predictions(out / name / "labels"), widths, SIZE_EDGES)}
    result["faces"] = int(sum(len(g) for g in gts.values()))
    return result


def classifier_rows(classifiers: list[Path]) -> dict:
    """Each classifier on FER2013 PrivateTest (top-1, macro recall) and faces-in-the-wild val (top-1, macro recall
    over its classes with >= MIN_SUPPORT faces)."""
    from scripts.scoring import evaluate_classifier
    from scripts.torch_classifier import load_split
    for table in (FACES_TABLE, FER2013_TABLE):
        if not table.exists():
            return dict(skipped=f"{table}: missing (see this module's docstring)")
    from converters.labels import class_names
    counts = sum(np.bincount(load_split(FACES_TABLE, s)[1], minlength=7) for s in ("train", "val"))
    kept = [class_names(7)[i] for i in np.flatnonzero(counts >= MIN_SUPPORT)]
    out = {"faces_classes": kept}
    for clf in classifiers:
        fer = evaluate_classifier(clf, FER2013_TABLE, "PrivateTest")
        real = evaluate_classifier(clf, FACES_TABLE, "PublicTest")
        out[clf.name] = dict(tta=fer["tta"], fer2013_private_top1=fer["top1"],
                             fer2013_private_macro_recall=fer["macro_recall"],
                             faces_val_top1=real["top1"], faces_val_n=real["n"],
                             faces_val_macro_recall=float(np.mean([real["per_class"][n]["recall"] for n in kept])),
                             faces_val_recall={n: real["per_class"][n]["recall"] for n in kept})
    return out


def markdown(r: dict) -> str:
    lines = [f"Real photos. Detector `{r['detector']}` ({r['imgsz']} px), classifier `{r['classifier']}`. Every method "
             "scored alike by `eval/detection.py`'s code: each box keeps every class above 0.001; face recall = any-"
             "class recall at IoU 0.5 and conf 0.25; right emotion = share of faces whose best detection at conf 0.25 "
             "and IoU 0.5 has the true class; ms/image = each method's whole call on one thread as scored (the "
             "photo in, its boxes out: letterbox, every pass, decoding with every class above 0.001 kept; PyTorch or "
             "ONNX Runtime; Haar with OpenCV), after one untimed call; under each table, the one-stage detector "
             "timed as `make predict` runs it (conf 0.25, one label a box). The detector without test-time "
             "augmentation, the "
             "classifier with the one it was selected with (its default). Model selection was on "
             "`roboflow-emotion/valid` + FER-scenes val (the detector) and PublicTest + faces-in-the-wild val (the "
             "classifier): the roboflow-valid rows are validation figures; the AffectNet photos and the FER-scenes "
             "test scenes were never used to choose anything.", ""]
    for name, s in r["sets"].items():
        if "skipped" in s:
            lines += [f"**{name}**: skipped: {s['skipped']}", ""]
            continue
        bins = s["one_stage"]["by_face_size"]
        heads = [f"{b['lo']:.0f}-{b['hi']:.0f} px" if b["hi"] < 100_000 else f">= {b['lo']:.0f} px" for b in bins]
        lines += [f"**{name}** ({s['one_stage']['images']} images, {s['faces']} faces; faces per size bin: "
                  + ", ".join(f"{h} {b['faces']}" for h, b in zip(heads, bins)) + ")", "",
                  "| method | mAP@0.5 Darknet | mAP@0.5 Ultralytics | mAP@0.5:0.95 | face recall@0.5 | "
                  + " | ".join(f"recall / right {h}" for h in heads) + " | ms/image |",
                  "|---|---:|---:|---:|---:|" + "---:|" * len(heads) + "---:|"]
        for m in ("one_stage", "two_stage", "hybrid"):
            d, u = s[m]["darknet"], s[m]["ultralytics"]
            lines.append(f"| {s[m]['label']} | {d['map50']:.3f} | {u['map50']:.3f} | {d['map50_95']:.3f} | "
                         f"{d['agnostic_recall50']:.3f} | " + " | ".join(
                             f"{b['found']:.2f} / {b['correct']:.2f}" for b in s[m]["by_face_size"])
                         + f" | {d['ms_per_image']:.1f} |")
        if "one_stage_predict_ms" in s:
            lines += ["", f"One-stage as `make predict` runs it (batch 1, one thread, conf 0.25, one label a box): "
                          f"**{s['one_stage_predict_ms']:.1f} ms/image**" + (
                              f"; its network alone at {r['imgsz']} px (the main pass's forward, batch 1, one "
                              f"thread): **{s['one_stage_network_ms']:.1f} ms/image**."
                              if "one_stage_network_ms" in s else ".")]
        lines.append("")
    c = r.get("classifiers", {})
    if "skipped" in c:
        lines += [f"Classifiers: skipped: {c['skipped']}", ""]
    elif c:
        lines += [f"Classifiers on real face photos: faces-in-the-wild val (identity-disjoint, faces framed by Haar "
                  f"+ box fit; macro recall over {', '.join(c['faces_classes'])}: the classes with >= {MIN_SUPPORT} "
                  "faces) and FER2013 PrivateTest, centre crop, each classifier with its own default test-time "
                  "augmentation.", "",
                  "| classifier | TTA | faces-in-the-wild val macro recall | its top-1 | FER2013 PrivateTest top-1 | "
                  "PrivateTest macro recall |", "|---|---|---:|---:|---:|---:|"]
        for name, v in c.items():
            if isinstance(v, dict):
                lines.append(f"| `{name}` | {v.get('tta', 'none')} | {v['faces_val_macro_recall']:.3f} | "
                             f"{v['faces_val_top1']:.3f} | "
                             f"{v['fer2013_private_top1']:.4f} | {v['fer2013_private_macro_recall']:.3f} |")
        lines.append("")
    lines.append(f"Command: `{r['command']}`")
    return "\n".join(lines)


def bench_real(detector: Path = DEFAULT_DETECTOR, classifier: Path = DEFAULT_CLASSIFIER,
               extra_classifiers: list[Path] = ()) -> dict:
    from scripts.detectors import load_detector
    cv2.setNumThreads(1)
    import torch
    torch.set_num_threads(1)
    if not detector.exists():
        raise EmoDetError(f"{detector}: no such detector")
    r = dict(detector=str(detector.relative_to(PROJECT_ROOT) if detector.is_relative_to(PROJECT_ROOT) else detector),
             classifier=classifier.name, imgsz=load_detector(detector).imgsz, sets={})
    for name, (gt, fit) in SETS.items():
        if not gt.is_dir():
            r["sets"][name] = dict(skipped=f"{gt}: missing (see scripts/bench_real.py's docstring)")
            continue
        r["sets"][name] = score_set(gt, methods(detector, classifier, fit), RUNS_DIR / "real-eval" / name)
        r["sets"][name]["one_stage_predict_ms"] = predict_ms(detector, images_in(gt))
        r["sets"][name]["one_stage_network_ms"] = network_ms(detector, images_in(gt))
    r["classifiers"] = classifier_rows([classifier, *extra_classifiers])
    r["command"] = "python -m scripts.bench --parts real" + (
        f" --detector {r['detector']}" if detector != DEFAULT_DETECTOR else "") + (
        f" --classifier {classifier}" if classifier != DEFAULT_CLASSIFIER else "")
    r["markdown"] = markdown(r)
    return r


VAL_SETS = {"roboflow-valid": DATA_DIR / "roboflow" / "yolo" / "val",
            "fer-scenes-val": DATA_DIR / "scenes-converted" / "yolo" / "val",
            # one photo in six of the identity-disjoint val split: one large face filling the photo, as in AffectNet
            "fitw-val": (DATA_DIR / "fitw" / "yolo" / "val", 6),
            # `make grids`' val split: the val split's photos tiled small, real faces at 20-100 px (roboflow valid
            # holds one face under 64 px, FER-scenes' small faces are FER2013's)
            "grids-val": DATA_DIR / "grids-converted" / "yolo" / "val"}
SMALL_FACES = (24, 64)  # px wide: the small-face bin a sweep reports, from the least face the detector is for


def sampled_folder(gt: Path, every: int, out: Path) -> Path:
    """A YOLO folder of every `every`-th image of `gt` (sorted by name) and its label, as links in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    for image in images_in(gt)[::every]:
        for src in (image, image.with_suffix(".txt")):
            link = out / src.name
            try:
                link.symlink_to(src.resolve())
            except FileExistsError:  # made by an earlier sweep, or by one running beside this one
                pass
    return out


def sweep_folder(detector: Path) -> Path:
    """Where one detector's sweep writes its predictions: sweeps of two detectors may run side by side (two
    files named best.pt included), and each reads back only its own."""
    tag = hashlib.sha1(str(detector.resolve()).encode()).hexdigest()[:8]
    return RUNS_DIR / "real-sweep" / f"{detector.stem}-{tag}"


def size_sweep(detector: Path, configs: list[str]) -> dict:
    """The one-stage detector at each input configuration ("320"; "320+160": a main size and an extra pass;
    "320+128:0.67:0.45": an extra pass with the photo shrunk into 0.67 of a 128 px input, for faces from 0.45 of
    the photo up; scripts.detectors.Pass) on the validation sets only
    (how the shipped passes are chosen): Darknet-style mAP@0.5, face recall@0.5 at conf 0.25, the share of faces
    with the right emotion at conf 0.25, found / right for faces of SMALL_FACES and >= 200 px of the photo, and
    the share found of faces from SMALL_FACES[0] px wide at the main pass's input (the photo's long side scaled to
    its size), per set."""
    from eval.detection_io import image_sizes, read_ground_truth, read_yolo_predictions
    from eval.detection_metrics import by_face_size
    from scripts.scoring import score_detector
    out = {}
    for config in configs:
        main, *extra = config.split("+")
        for name, gt in VAL_SETS.items():
            if isinstance(gt, tuple):
                gt = sampled_folder(gt[0], gt[1], RUNS_DIR / "real-sweep" / f"{name}-images") if gt[0].is_dir() \
                    else gt[0]
            if not gt.is_dir():
                continue
            det = one_thread_detector(detector, int(main), multi_label=True, extra_passes=extra)
            run = sweep_folder(detector) / f"{name}-{config.replace(':', '_')}"
            r = score_detector(det, gt, run)
            truth, found, sizes = read_ground_truth(gt), read_yolo_predictions(run / "labels"), image_sizes(gt)
            bins = by_face_size(truth, found, {k: w for k, (w, h) in sizes.items()}, (0, *SMALL_FACES, 200, 100_000))
            small, big = bins[1], bins[-1]
            # the same faces measured at the main pass's input (the photo's long side is det.imgsz there): what the
            # network sees decides what it finds, whatever the photo's own size
            seen = by_face_size(truth, found, {k: det.imgsz * w / max(w, h) for k, (w, h) in sizes.items()},
                                (SMALL_FACES[0], 100_000))[0]
            faces = sum(b["faces"] for b in bins)
            out.setdefault(config, {})[name] = dict(map50=r["darknet"]["map50"],
                                                    recall=r["darknet"]["agnostic_recall50"],
                                                    right=sum(b["correct"] * b["faces"] for b in bins) / max(1, faces),
                                                    small_faces=small["faces"], small_found=small["found"],
                                                    small_right=small["correct"],
                                                    big_faces=big["faces"], big_found=big["found"],
                                                    big_right=big["correct"], input_faces=seen["faces"],
                                                    input_found=seen["found"], ms=r["ms_per_image"])
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.bench_real", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR)
    p.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER)
    p.add_argument("--also", type=Path, nargs="*", default=[], help="more classifiers for the faces table")
    p.add_argument("--json", type=Path, default=RESULTS_DIR / "bench" / "real.json")
    p.add_argument("--sweep", nargs="+", default=None, metavar="PX[+PX[:FILL[:FROM]]][+cropPX[:CONTEXT[:TO]]]",
                   help="instead: score the detector at these input configurations (320; 320+160 for a main size "
                        "and an extra pass; 320+128:0.67:0.45 for an extra pass with the photo shrunk into 0.67 of "
                        "a 128 px input, giving its opinion on faces from 0.45 of the photo up; +crop64:1.2:0.3 for a "
                        "crop pass on faces up to 0.3 of the photo) on the validation sets (how the shipped passes "
                        "are chosen)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.sweep:
        import torch
        torch.set_num_threads(1)
        for config, sets in size_sweep(args.detector, args.sweep).items():
            print(f"{config}: " + "  ".join(
                f"{n} mAP@0.5 {v['map50']:.3f} recall {v['recall']:.3f} right {v['right']:.3f} "
                f"{SMALL_FACES[0]}-{SMALL_FACES[1]}px found {v['small_found']:.2f} right {v['small_right']:.2f} "
                f"(of {v['small_faces']}) >=200px found {v['big_found']:.2f} "
                f"right {v['big_right']:.2f} (of {v['big_faces']}) >={SMALL_FACES[0]}px at the input found "
                f"{v['input_found']:.3f} (of {v['input_faces']}) {v['ms']:.1f} ms" for n, v in sets.items()),
                flush=True)
        return 0
    r = bench_real(args.detector, args.classifier, args.also)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(r, indent=1))
    print(r["markdown"])
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
