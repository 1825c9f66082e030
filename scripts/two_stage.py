"""Two-stage emotion detection, the baseline the one-stage detectors are measured against: a face detector whose
weights ship in a registry package (OpenCV's Haar cascade, inside the opencv wheel) proposes faces, and a FER
classifier labels each one.

A Haar box frames a face differently from our ground truth (a FER2013 crop is looser than the cascade's square),
so a BoxFit - centre shift and side scale - maps one onto the other. It is fitted on a validation split (`fit`)
and applied unchanged where the method is scored (`eval` on the test split).

  python -m scripts.two_stage fit  --gt data/scenes-converted/yolo/val     # -> weights/haar-box-fit.json
  python -m scripts.two_stage eval --gt data/scenes-converted/yolo/test --out runs/two-stage
"""
from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import cv2
import numpy as np

from converters.errors import EmoDetError, run_cli
from converters.io import atomic_write_text, image_beside
from converters.settings import DEFAULT_CLASSIFIER, RUNS_DIR, WEIGHTS_DIR
from converters.face_boxes import DEFAULT_CASCADE, BoxFit, fitted_box, haar_cascade, haar_faces, load_fit
from converters.progress import tracked
from scripts.detectors import candidate_detections
from scripts.scoring import score_detector

DEFAULT_FIT = WEIGHTS_DIR / "haar-box-fit.json"
FACE_SIZE = 48  # the FER classifiers' input


def face_crops(gray: np.ndarray, boxes: np.ndarray, size: int = FACE_SIZE) -> np.ndarray:
    """(n, size, size) uint8 crops of `boxes` (x, y, w, h); parts outside the image repeat its border, so a face
    at the edge keeps its scale instead of being stretched."""
    if not len(boxes):
        return np.zeros((0, size, size), np.uint8)
    pad = int(np.ceil(max(0.0, -boxes[:, :2].min(), (boxes[:, 0] + boxes[:, 2]).max() - gray.shape[1],
                          (boxes[:, 1] + boxes[:, 3]).max() - gray.shape[0]))) + 1
    padded = cv2.copyMakeBorder(gray, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    out = []
    for x, y, w, h in np.round(boxes).astype(int):
        crop = padded[y + pad:y + pad + max(h, 1), x + pad:x + pad + max(w, 1)]
        out.append(cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA if w > size else cv2.INTER_LINEAR))
    return np.stack(out)


class HaarFaces:
    """Face proposals from OpenCV's Haar cascade: (n, 4) x, y, w, h and a face score of 1 (the cascade has no
    calibrated confidence), mapped onto the ground-truth framing by `fit`."""

    def __init__(self, fit: BoxFit = BoxFit(), cascade: str = DEFAULT_CASCADE, min_size: int = 24):
        self.cascade, self.fit, self.min_size = haar_cascade(cascade), fit, min_size

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        found = haar_faces(_gray(image), self.cascade, self.min_size)
        return self.fit.apply(found), np.ones(len(found))


class DetectorFaces:
    """Face proposals from a one-stage emotion detector, emotion ignored: boxes of any class at confidence >=
    `conf`, merged by class-agnostic NMS. The detector only gates (face score 1) and the classifier ranks: on
    the validation scenes that beat ranking by detector confidence x class probability (mAP@0.5 0.47 vs 0.44)
    and found more faces."""

    def __init__(self, detector, conf: float = 0.1, iou: float = 0.5):
        self.detector, self.conf, self.iou = detector, conf, iou

    def __call__(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        det = self.detector(image, self.conf, 0.7)
        if not len(det):
            return np.zeros((0, 4)), np.zeros(0)
        xywh = np.c_[det[:, 2:4], det[:, 4:6] - det[:, 2:4]]
        keep = np.asarray(cv2.dnn.NMSBoxes(xywh.tolist(), det[:, 1].tolist(), self.conf, self.iou), int).reshape(-1)
        return xywh[keep], np.ones(len(keep))


def _gray(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


class TwoStageDetector:
    """Face proposals (Haar by default) + a FER classifier, called like the one-stage detectors of
    scripts/predict.py: image in, (n, 6) class, score, x1, y1, x2, y2 (pixels) out; score = the class's
    probability x the proposal's face score. One label per face (the classifier's top class) for drawing, or with
    `multi_label` every class at >= conf, as the one-stage detectors are scored (scripts/predict.py)."""

    def __init__(self, classifier: Path = DEFAULT_CLASSIFIER, fit: BoxFit = BoxFit(), n_classes: int = 7,
                 threads: int | None = None, faces=None, multi_label: bool = False):
        from scripts.classifiers import load_classifier
        self.classifier = load_classifier(Path(classifier), threads)
        self.faces = faces or HaarFaces(fit)
        self.names = self.classifier.label_names(n_classes)  # the classifier's own, for a custom-class model
        self.n_classes, self.multi_label = len(self.names), multi_label

    def __call__(self, image: np.ndarray, conf: float = 0.0, iou: float | None = None) -> np.ndarray:
        # iou is accepted for the common interface: proposals arrive merged already
        return self.with_scores(image, conf, iou)[0]

    def with_scores(self, image: np.ndarray, conf: float = 0.0, iou: float | None = None
                    ) -> tuple[np.ndarray, np.ndarray]:
        """What __call__ returns, and the classifier's probabilities (times the face score) of each row's face."""
        gray = _gray(image)
        boxes, face_score = self.faces(image)
        if not len(boxes):
            return np.zeros((0, 6)), np.zeros((0, self.n_classes))
        p = self.classifier.probabilities(face_crops(gray, boxes), self.n_classes) * face_score[:, None]
        face, cls, score = candidate_detections(p.T, self.multi_label, conf)
        h, w = gray.shape
        b = boxes[face]
        x1, y1 = np.clip(b[:, 0], 0, w), np.clip(b[:, 1], 0, h)
        x2, y2 = np.clip(b[:, 0] + b[:, 2], 0, w), np.clip(b[:, 1] + b[:, 3], 0, h)
        return np.c_[cls, score, x1, y1, x2, y2], p[face]


def _xyxy(b: np.ndarray) -> np.ndarray:
    return np.c_[b[:, :2], b[:, :2] + b[:, 2:]]


def _xywh_pixels(labels: np.ndarray, w: int, h: int) -> np.ndarray:
    """(n, 5) class + normalised xyxy (eval.detection_io) -> (n, 4) pixel x, y, w, h."""
    b = labels[:, 1:5] * [w, h, w, h]
    return np.c_[b[:, :2], b[:, 2:] - b[:, :2]]


def fit_on_folder(gt: Path, cascade: str = DEFAULT_CASCADE, min_size: int = 24, match_iou: float = 0.3,
                  progress: bool = True) -> BoxFit:
    """Fit the Haar -> ground-truth box mapping on a YOLO folder (images with labels beside them): every ground-truth
    face takes the Haar box of best IoU above `match_iou` (low on purpose: the boxes differ before the fit)."""
    from eval.detection_io import read_ground_truth
    from eval.detection_metrics import iou_matrix
    haar = haar_cascade(cascade)
    detected, truth = [], []
    gts = read_ground_truth(gt)
    for stem, labels in tracked(gts.items(), desc="fit boxes", unit="img", disable=not progress):
        gray = _read_gray(Path(gt), stem)
        h, w = gray.shape
        found = haar_faces(gray, haar, min_size)
        if not len(found) or not len(labels):
            continue
        t = _xywh_pixels(labels, w, h)
        iou = iou_matrix(_xyxy(t), _xyxy(found))
        for i, j in enumerate(iou.argmax(1)):
            if iou[i, j] >= match_iou:
                detected.append(found[j])
                truth.append(t[i])
    return fitted_box(np.array(detected), np.array(truth))


def _read_gray(folder: Path, stem: str) -> np.ndarray:
    p = image_beside(folder / f"{stem}.txt")
    if p is None:
        raise EmoDetError(f"{folder}/{stem}: label without an image beside it")
    img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
    if img is None:
        raise EmoDetError(f"{p}: undecodable image")
    return img


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.two_stage", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fit", help="fit the Haar -> ground-truth box mapping on a validation YOLO folder")
    f.add_argument("--gt", type=Path, required=True, help="YOLO folder (images with .txt labels beside them)")
    f.add_argument("--out", type=Path, default=DEFAULT_FIT)
    e = sub.add_parser("eval", help="predict a YOLO folder with Haar + classifier and score it (darknet and "
                                    "ultralytics styles)")
    e.add_argument("--gt", type=Path, required=True)
    e.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER)
    e.add_argument("--box-fit", type=Path, default=DEFAULT_FIT)
    e.add_argument("--out", type=Path, default=RUNS_DIR / "two-stage")
    e.add_argument("--classes", type=int, choices=(7, 8), default=7)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "fit":
        fit = fit_on_folder(args.gt)
        atomic_write_text(args.out, json.dumps(asdict(fit), indent=1) + "\n")
        print(f"box fit from {fit.pairs} matched faces: scale {fit.scale:.3f}, shift ({fit.dx:+.3f}, {fit.dy:+.3f}) "
              f"box sides -> {args.out}")
        return 0
    detector = TwoStageDetector(args.classifier, load_fit(args.box_fit), args.classes, multi_label=True)
    result = score_detector(detector, args.gt, args.out)
    print(result["report"])
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
