"""Predictions written for scoring, and scoring them: any detector of scripts.detectors' interface (one-stage,
two-stage, hybrid) on a YOLO folder -> prediction files -> eval's metrics in the Darknet and Ultralytics styles;
a classifier file on a face table -> classification metrics."""
from __future__ import annotations

import sys
import time
from pathlib import Path

import cv2

from converters.errors import EmoDetError
from converters.io import images_in
from converters.progress import tracked
from converters.settings import DATA_DIR, FER2013_TABLE, fer2013_dir
from eval.classification import classification_metrics, group_metrics
from eval.classify_data import load_faces, load_groups
from scripts.detectors import load_detector


def write_yolo_predictions(detector, images: list[Path], out: Path, conf: float = 0.001,
                           iou: float = 0.7) -> float:
    """Run any detector of this module's interface on `images`, one `<stem>.txt` per image in `out`
    (`class cx cy w h conf`, normalised: what eval/detection.py reads). Returns model milliseconds per image
    (decoding the files excluded; after one untimed call on the first image). The detector must keep several
    labels per box (`multi_label`), as the engines' own mAP does (Ultralytics val; Darknet `detector valid`
    writes every class above its threshold): one label per box would score a different, lower mAP than the
    engine reports for the same weights."""
    if not getattr(detector, "multi_label", False):
        raise EmoDetError("predictions for scoring need a detector built with multi_label=True")
    out.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    for k, path in enumerate(tracked(images, desc="predict", unit="img")):
        img = cv2.imread(str(path))
        if img is None:
            raise EmoDetError(f"{path}: undecodable image")
        if k == 0:  # one untimed call: a runtime's first run sets itself up (ONNX Runtime: 12 ms more, once)
            detector(img, conf, iou)
        t0 = time.perf_counter()
        det = detector(img, conf, iou)
        seconds += time.perf_counter() - t0
        h, w = img.shape[:2]
        lines = [f"{int(c)} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f} "
                 f"{s:.6f}\n" for c, s, x1, y1, x2, y2 in det]
        (out / f"{path.stem}.txt").write_text("".join(lines))
    return 1000 * seconds / max(len(images), 1)


def write_scoring_predictions(weights: Path, images: list[Path], out: Path, imgsz: int | None = None) -> Path:
    """Prediction files for eval/detection.py from Ultralytics weights (.pt or .onnx), scored multi-label."""
    write_yolo_predictions(load_detector(weights, imgsz, multi_label=True), images, Path(out))
    return Path(out)


def score_detector(detector, gt: Path, out: Path) -> dict:
    """Predict every image of a YOLO folder and score it in the darknet and ultralytics styles: metrics JSON per
    style, PR/confusion plots, and a text report in `out`."""
    from converters.io import write_json
    from eval.detection_report import evaluate_folders, report_text, write_plots
    images = images_in(gt)
    if not images:
        raise EmoDetError(f"{gt}: no images to predict")
    ms = write_yolo_predictions(detector, images, out / "labels")
    result, reports = dict(ms_per_image=ms, images=len(images)), []
    for style in ("darknet", "ultralytics"):
        m = evaluate_folders(gt, out / "labels", style)
        if style == "darknet":
            write_plots(m, out)
        reports.append(report_text(m))
        m["ms_per_image"] = ms
        write_json(out / f"metrics-{style}.json", m.to_json())
        result[style] = m
    result["report"] = "\n\n".join(reports) + f"\n{ms:.1f} ms per image (model only), {len(images)} images; in {out}"
    (out / "report.txt").write_text(result["report"] + "\n")
    return result


def ensure_default_data(data: Path) -> Path:
    """The FER2013 table, converted from the shared dataset on first use."""
    if data != FER2013_TABLE or data.exists():
        return data
    src = fer2013_dir() / "fer2013.csv.gz"
    if not src.exists():
        raise EmoDetError(f"{data}: not found, and no FER2013 at {src} to build it from (set EMODET_DATASETS)")
    print(f"converting {src} -> {data.parent.parent} (first use)", file=sys.stderr)
    from converters.fer2013 import main as convert_main
    convert_main(["--out", str(DATA_DIR), "--formats", "table", "--quiet"])
    return data


def data_names(data: Path, default) -> tuple[str, ...]:
    """The classes a table's labels index when it declares its own (`label_order`), else `default`."""
    from converters.labels import is_canonical
    from converters.writers import table_names
    declared = table_names(data) if Path(data).suffix in (".h5", ".hdf5") else None
    return declared if declared and not is_canonical(declared) else tuple(default)


def evaluate_classifier(weights: Path, data: Path, split: str, k: int = 2, tta: str | None = None,
                        groups: Path | None = None, n_classes: int = 7, input_size: int | None = None) -> dict:
    from scripts.classifiers import load_classifier
    faces, labels, ids = load_faces(data, split)
    clf = load_classifier(weights, input_size=input_size)
    tta = tta or clf.tta  # none named: the model's own
    t0 = time.perf_counter()
    names = data_names(data, clf.label_names(n_classes))
    scores = clf.scores_in(faces, names, tta)
    seconds = time.perf_counter() - t0
    m = classification_metrics(scores, labels, names, k)
    m.update(split=split, data=str(data), weights=str(weights), backend=clf.backend, tta=tta, input_size=input_size,
             seconds=seconds, faces_per_second=len(labels) / max(seconds, 1e-9))
    if groups:
        m["groups"] = group_metrics(scores, labels, m["names"], load_groups(groups, ids), k)
    return m
