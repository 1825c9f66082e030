"""`python -m scripts.predict SOURCE --weights W`: run a one-stage emotion detector on an image, a folder of
images or a video file; writes annotated images (or an annotated video) and one CSV of boxes
(source, frame, class, name, score, x1, y1, x2, y2 in pixels). Backends: Ultralytics `.pt` (PyTorch) or its
ONNX export (`.onnx`, run with ONNX Runtime). `--two-stage` runs the baseline instead: OpenCV's Haar face
detector + a FER classifier (scripts/two_stage.py)."""
from __future__ import annotations

import argparse
import csv
import functools
import math
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from converters.errors import EmoDetError, run_cli
from converters.labels import class_names
from converters.settings import DEFAULT_DETECTOR, RUNS_DIR
from converters.progress import tracked
from eval.plots import annotated_image, contact_sheet

IMAGES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEOS = {".mp4", ".avi", ".mov", ".mkv", ".webm"}


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """The image as Ultralytics' val feeds it: the long side resized to `size` (sides rounded up, bilinear, as
    its dataset loader does), centred on a grey (114) size x size canvas. Returns the canvas, the x and y scale
    actually applied and the padding. Any other rounding or interpolation shifts the class scores by a few
    hundredths (measured: mAP@0.5 0.591 against the engine's 0.580 on the same 120 scenes with area averaging;
    identical predictions this way)."""
    h, w = image.shape[:2]
    gain = min(size / h, size / w)
    nh, nw = max(1, min(math.ceil(h * gain), size)), max(1, min(math.ceil(w * gain), size))
    top, left = round((size - nh) / 2 - 0.1), round((size - nw) / 2 - 0.1)
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[top:top + nh, left:left + nw] = image if (nh, nw) == (h, w) else cv2.resize(
        image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, (nw / w, nh / h), (left, top)


def candidate_detections(scores: np.ndarray, multi_label: bool, conf: float) -> tuple[np.ndarray, np.ndarray,
                                                                                        np.ndarray]:
    """(anchor index, class, score) of the candidates in a (classes, anchors) score map: each anchor's best class,
    or with `multi_label` every class scoring >= conf (what Ultralytics' val and Darknet's `detector valid` score:
    a face the detector half calls sad and half neutral counts for both, each at its own confidence)."""
    if multi_label:
        cls, anchor = np.nonzero(scores >= conf)
        return anchor, cls, scores[cls, anchor]
    cls, score = scores.argmax(0), scores.max(0)
    anchor = np.nonzero(score >= conf)[0]
    return anchor, cls[anchor], score[anchor]


@functools.lru_cache(maxsize=4)
def mirrored_anchors(imgsz: int, strides=(8, 16, 32)) -> np.ndarray:
    """For each anchor of a YOLOv8-style output (the grids of `strides`, row-major, concatenated), the index of
    the anchor at its mirror position in the horizontally flipped input. Cached (read-only): flip averaging asks
    for it on every frame."""
    out, offset = [], 0
    for s in strides:
        g = imgsz // s
        out.append(np.arange(g * g).reshape(g, g)[:, ::-1].ravel() + offset)
        offset += g * g
    perm = np.concatenate(out)
    perm.flags.writeable = False
    return perm


def flip_averaged(out: np.ndarray, out_flipped: np.ndarray, imgsz: int) -> np.ndarray:
    """Raw outputs of an input and its mirror image averaged anchor by anchor (flip test-time augmentation): the
    mirror's anchors are put back in place and its box centres mirrored; sizes and class scores are averaged."""
    perm = mirrored_anchors(imgsz)
    if out.shape[1] != len(perm):  # e.g. yolov3-tiny's two output strides
        raise EmoDetError(f"flip averaging needs outputs at strides 8, 16 and 32 ({len(perm)} anchors at {imgsz} px); "
                          f"this detector has {out.shape[1]}")
    back = out_flipped[:, perm]
    back[0] = imgsz - back[0]
    return (out + back) / 2


class LetterboxDetector:
    """An Ultralytics detector behind a raw forward pass ((4 + classes, anchors): cx, cy, w, h in input pixels, then
    class scores), decoded here with class-wise NMS so that PyTorch and ONNX weights give the same boxes.
    `multi_label` keeps every class above the threshold per box (for mAP), else the top class (for drawing);
    `flip` averages the outputs of the image and its mirror image (2x the time)."""

    imgsz: int
    names: list[str] | None = None  # the model's own class names, when it carries them

    def __init__(self, multi_label: bool = False, max_det: int = 300, flip: bool = False):
        self.multi_label, self.max_det, self.flip = multi_label, max_det, flip

    def raw(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __call__(self, image: np.ndarray, conf: float, iou: float) -> np.ndarray:
        """(n, 6) class, score, x1, y1, x2, y2 in pixels of `image`, best first."""
        return self.with_scores(image, conf, iou)[0]

    def with_scores(self, image: np.ndarray, conf: float, iou: float) -> tuple[np.ndarray, np.ndarray]:
        """What __call__ returns, and each box's score for every class (n, classes): the emotion distribution
        an app shows per face."""
        padded, (sx, sy), (left, top) = letterbox(image, self.imgsz)
        x = np.ascontiguousarray(padded[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0
        out = self.raw(x)
        if self.flip:
            out = flip_averaged(out, self.raw(np.ascontiguousarray(x[..., ::-1])), self.imgsz)
        anchor, cls, score = candidate_detections(out[4:], self.multi_label, conf)
        cx, cy, w, h = out[:4, anchor]
        boxes = np.stack([cx - w / 2, cy - h / 2, w, h], 1)
        idx = cv2.dnn.NMSBoxesBatched(boxes.tolist(), score.tolist(), cls.tolist(), conf, iou) if len(anchor) else []
        idx = np.asarray(idx, int).reshape(-1)
        idx = idx[np.argsort(-score[idx], kind="stable")][:self.max_det]
        b = boxes[idx]
        x1, y1 = (b[:, 0] - left) / sx, (b[:, 1] - top) / sy
        x2, y2 = x1 + b[:, 2] / sx, y1 + b[:, 3] / sy
        hh, ww = image.shape[:2]
        det = np.c_[cls[idx], score[idx], np.clip(x1, 0, ww), np.clip(y1, 0, hh), np.clip(x2, 0, ww),
                    np.clip(y2, 0, hh)]
        return det, out[4:, anchor[idx]].T


def _names_from_metadata(text: str | None) -> list[str] | None:
    """Class names from an Ultralytics ONNX export's metadata (`{0: 'neutral', ...}`), if present."""
    import ast
    try:
        names = ast.literal_eval(text) if text else None
    except (ValueError, SyntaxError):
        return None
    return [names[i] for i in sorted(names)] if isinstance(names, dict) else None


class OnnxDetector(LetterboxDetector):
    """An Ultralytics detector exported to ONNX (output (1, 4 + classes, anchors)), run with ONNX Runtime."""

    def __init__(self, path: Path, imgsz: int, threads: int | None = None, **decode):
        import onnxruntime as ort
        super().__init__(**decode)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EmoDetError(f"{path}: not a loadable ONNX model ({type(exc).__name__})") from None
        self.input = self.sess.get_inputs()[0].name
        shape = self.sess.get_inputs()[0].shape
        self.imgsz = shape[-1] if isinstance(shape[-1], int) else checked_imgsz(imgsz or 256, path)
        meta = self.sess.get_modelmeta().custom_metadata_map.get("names")
        self.names = _names_from_metadata(meta)

    def raw(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {self.input: x})[0][0]


STRIDE = 32  # the largest stride of every detector here: the input side must be a multiple of it


def checked_imgsz(imgsz: int, where) -> int:
    """`imgsz` if the detector can take it; one line otherwise (a side that is not a multiple of the stride fails
    inside torch, or silently finds nothing)."""
    if imgsz < STRIDE or imgsz % STRIDE:
        raise EmoDetError(f"{where}: input size {imgsz} is not a positive multiple of {STRIDE}")
    return int(imgsz)


def checkpoint_imgsz(net) -> int | None:
    """The input size an Ultralytics model was trained at (its checkpoint's train_args), if it says."""
    size = (getattr(net, "args", None) or {}).get("imgsz")
    return int(size[0] if isinstance(size, (list, tuple)) else size) if size else None


class TorchDetector(LetterboxDetector):
    """An Ultralytics detector checkpoint (.pt), its network run directly in PyTorch; by default at the input size
    and with the class names it was trained with."""

    def __init__(self, path: Path, imgsz: int | None, **decode):
        from scripts.ultra import ultralytics
        super().__init__(**decode)
        try:
            self.net = ultralytics().YOLO(str(path), task="detect").model.float().eval()
        except Exception as exc:  # a text file, a truncated download, another framework's pickle
            raise EmoDetError(f"{path}: not an Ultralytics checkpoint ({type(exc).__name__})") from None
        self.imgsz = checked_imgsz(imgsz or checkpoint_imgsz(self.net) or 256, path)
        names = getattr(self.net, "names", None)
        self.names = [names[i] for i in sorted(names)] if isinstance(names, dict) else None

    def raw(self, x: np.ndarray) -> np.ndarray:
        import torch
        with torch.inference_mode():
            out = self.net(torch.from_numpy(x))
        return (out[0] if isinstance(out, (list, tuple)) else out)[0].numpy()


def load_detector(weights: Path, imgsz: int | None = None, **decode) -> LetterboxDetector:
    weights = Path(weights)
    if not weights.exists():
        raise EmoDetError(f"{weights}: no such weights file")
    return (OnnxDetector if weights.suffix == ".onnx" else TorchDetector)(weights, imgsz, **decode)


STREAM_SCHEMES = ("rtsp://", "rtmp://", "http://", "https://", "udp://", "tcp://")


def is_stream(source) -> bool:
    """A camera index (`0`) or a network stream URL: read live through OpenCV, frame by frame."""
    text = str(source)
    return text.isdigit() or text.lower().startswith(STREAM_SCHEMES)


def _capture_frames(cap, name: str):
    k = 0
    try:
        while True:
            ok, img = cap.read()
            if not ok:
                break
            yield name, k, img
            k += 1
    finally:
        cap.release()


def frames(source):
    """(name, frame index, BGR image or None if undecodable) for an image, a folder of images, a video file, a
    camera index or a stream URL."""
    if is_stream(source):
        text = str(source)
        cap = cv2.VideoCapture(int(text) if text.isdigit() else text)
        if not cap.isOpened():
            raise EmoDetError(f"{text}: cannot open the camera or stream")
        yield from _capture_frames(cap, f"camera{text}" if text.isdigit() else text.rsplit("/", 1)[-1] or "stream")
        return
    source = Path(source)
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGES)
        if not files:
            raise EmoDetError(f"{source}: no images")
        for p in files:
            img = cv2.imread(str(p))
            yield p.name, 0, img  # None: undecodable, reported and skipped by the caller
    elif source.suffix.lower() in VIDEOS:
        cap = cv2.VideoCapture(str(source))
        if not cap.isOpened():
            raise EmoDetError(f"{source}: cannot open video")
        yield from _capture_frames(cap, source.name)
    elif source.is_file():
        img = cv2.imread(str(source))
        if img is None:
            raise EmoDetError(f"{source}: not an image or a known video type")
        yield source.name, 0, img
    else:
        raise EmoDetError(f"{source}: no such file or folder")


SHEET_MAX = 64  # images on a folder's contact sheet (the first ones, in name order)
WINDOW = "EmoDet (q or Esc to stop)"


def has_display() -> bool:
    import os
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


class _Outputs:
    """What a prediction run writes as it goes: annotated images or one annotated video, the contact sheet of a
    folder, and detections.csv (rows kept in memory and written at the end, also after Ctrl-C)."""

    def __init__(self, out: Path, video_name: str | None, sheet: bool, fps: float = 25.0):
        self.out, self.video_name, self.sheet_wanted, self.fps = out, video_name, sheet, fps
        self.writer, self.rows, self.sheet = None, [], []

    def add(self, name: str, k: int, drawn: np.ndarray) -> None:
        if self.video_name:
            if self.writer is None:
                h, w = drawn.shape[:2]
                self.writer = cv2.VideoWriter(str(self.out / f"{self.video_name}_annotated.mp4"),
                                              cv2.VideoWriter_fourcc(*"mp4v"), self.fps, (w, h))
            self.writer.write(drawn)
            return
        cv2.imwrite(str(self.out / f"{Path(name).stem}_annotated.jpg"), drawn)
        if self.sheet_wanted and len(self.sheet) < SHEET_MAX:
            self.sheet.append((drawn, name))

    def close(self) -> str | None:
        if self.writer is not None:
            self.writer.release()
        with (self.out / "detections.csv").open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["source", "frame", "class", "name", "score", "x1", "y1", "x2", "y2"])
            w.writerows(self.rows)
        if not self.sheet:
            return None
        path = self.out / "contact_sheet.jpg"
        cv2.imwrite(str(path), contact_sheet([d for d, _ in self.sheet], captions=[c for _, c in self.sheet]))
        return str(path)


def predict(source, weights, out: Path, imgsz: int | None = None, conf: float = 0.25, iou: float = 0.7,
            n_classes: int = 7, show: bool | None = None, max_frames: int | None = None) -> dict:
    """`weights`: a detector file, or an already built detector (e.g. scripts.two_stage.TwoStageDetector).
    A folder also gets contact_sheet.jpg (the annotated images in a grid); undecodable files are listed in
    `bad` and skipped. Videos, cameras and streams give one annotated video; `show` (default: when a display
    exists) opens a live window. Ctrl-C (or q in the window) stops and keeps what was written so far."""
    detector = weights if callable(weights) else load_detector(weights, imgsz)
    names = getattr(detector, "names", None) or class_names(n_classes)
    out.mkdir(parents=True, exist_ok=True)
    live = is_stream(source)
    video = live or Path(source).suffix.lower() in VIDEOS
    name = ("camera" + str(source)) if str(source).isdigit() else Path(str(source).split("?")[0]).stem or "stream"
    outputs = _Outputs(out, name if video else None, not video and Path(source).is_dir())
    show = has_display() if show is None else show
    n, t_model, bad, interrupted = 0, 0.0, [], False
    t_start = time.perf_counter()
    try:
        for name, k, img in tracked(frames(source), desc="predict", unit="frame"):
            if img is None:
                bad.append(name)
                continue
            t0 = time.perf_counter()
            det = detector(img, conf, iou)
            t_model += time.perf_counter() - t0
            n += 1
            outputs.rows.extend([name, k, int(c), names[int(c)], f"{s:.4f}", *(f"{v:.1f}" for v in xyxy)]
                                for c, s, *xyxy in det)
            h, w = img.shape[:2]
            norm = np.c_[det[:, :2], det[:, 2:] / [w, h, w, h]] if len(det) else np.zeros((0, 6))
            drawn = annotated_image(img, norm, names)
            outputs.add(name, k, drawn)
            if show:
                cv2.imshow(WINDOW, drawn)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    interrupted = True
                    break
            if max_frames and n >= max_frames:
                break
    except KeyboardInterrupt:
        interrupted = True
    finally:
        sheet = outputs.close()
        if show:
            cv2.destroyAllWindows()
    seconds = time.perf_counter() - t_start
    return dict(frames=n, boxes=len(outputs.rows), ms_per_frame=1000 * t_model / max(n, 1), out=str(out), bad=bad,
                contact_sheet=sheet, fps=n / seconds if seconds > 0 else 0.0, interrupted=interrupted)


def write_yolo_predictions(detector, images: list[Path], out: Path, conf: float = 0.001,
                           iou: float = 0.7) -> float:
    """Run any detector of this module's interface on `images`, one `<stem>.txt` per image in `out`
    (`class cx cy w h conf`, normalised: what eval/detection.py reads). Returns model milliseconds per image
    (decoding the files excluded). The detector must keep several labels per box (`multi_label`), as the
    engines' own mAP does (Ultralytics val; Darknet `detector valid` writes every class above its threshold):
    one label per box would score a different, lower mAP than the engine reports for the same weights."""
    if not getattr(detector, "multi_label", False):
        raise EmoDetError("predictions for scoring need a detector built with multi_label=True")
    out.mkdir(parents=True, exist_ok=True)
    seconds = 0.0
    for path in tracked(images, desc="predict", unit="img"):
        img = cv2.imread(str(path))
        if img is None:
            raise EmoDetError(f"{path}: undecodable image")
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
    from eval.detection import evaluate_folders, report_text, write_plots
    images = sorted(p for p in Path(gt).iterdir() if p.suffix.lower() in IMAGES)
    if not images:
        raise EmoDetError(f"{gt}: no images to predict")
    ms = write_yolo_predictions(detector, images, out / "labels")
    result, reports = dict(ms_per_image=ms, images=len(images)), []
    for style in ("darknet", "ultralytics"):
        m = evaluate_folders(gt, out / "labels", style)
        if style == "darknet":
            write_plots(m, out)
        reports.append(report_text(m))
        m.pop("_data")
        m["ms_per_image"] = ms
        write_json(out / f"metrics-{style}.json", m)
        result[style] = m
    result["report"] = "\n\n".join(reports) + f"\n{ms:.1f} ms per image (model only), {len(images)} images; in {out}"
    (out / "report.txt").write_text(result["report"] + "\n")
    return result


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.predict", description=__doc__)
    p.add_argument("source", help="image, folder of images, video file, camera index (0) or stream URL "
                                  "(rtsp://, http://)")
    p.add_argument("--weights", type=Path, default=None,
                   help=f"Ultralytics detector .pt or its .onnx export (default: {DEFAULT_DETECTOR.name}, the shipped "
                        "real-photo detector; with --two-stage: none, Haar finds the faces)")
    p.add_argument("--two-stage", action="store_true",
                   help="Haar face detector + FER classifier instead (with --weights: the detector's boxes, emotion "
                        "ignored, as the faces)")
    p.add_argument("--classifier", type=Path, default=None,
                   help="with --two-stage: FER classifier (default: the best shipped FER2013 model, "
                        "converters/settings.py)")
    p.add_argument("--box-fit", type=Path, default=None,
                   help="with --two-stage: Haar box correction (default weights/haar-box-fit.json if present)")
    p.add_argument("--out", type=Path, default=RUNS_DIR / "predict")
    p.add_argument("--imgsz", type=int, default=None,
                   help="input size (default: the size the detector was trained at, from its checkpoint)")
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.7)
    p.add_argument("--classes", type=int, choices=(7, 8), default=7)
    p.add_argument("--show", action=argparse.BooleanOptionalAction, default=None,
                   help="live window (default: when a display exists; headless otherwise)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames (live sources)")
    p.add_argument("--flip", action="store_true",
                   help="average the detector's outputs on the image and its mirror image (2x the time; FER-scenes "
                        "val: mAP@0.5 +0.01)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.two_stage or args.weights):
        args.weights = DEFAULT_DETECTOR
    detector = args.weights and load_detector(args.weights, args.imgsz, flip=args.flip)
    if args.two_stage:
        from scripts import two_stage
        faces = two_stage.DetectorFaces(detector) if detector else None
        fit = args.box_fit or (two_stage.DEFAULT_FIT if two_stage.DEFAULT_FIT.exists() else None)
        detector = two_stage.TwoStageDetector(args.classifier or two_stage.DEFAULT_CLASSIFIER,
                                              two_stage.load_fit(fit), args.classes, faces=faces)
    r = predict(args.source, detector, args.out, args.imgsz, args.conf, args.iou, args.classes, args.show,
                args.max_frames)
    stopped = " (stopped early; what was written is kept)" if r["interrupted"] else ""
    print(f"{r['frames']} frame(s){stopped}, {r['boxes']} boxes, {r['ms_per_frame']:.1f} ms/frame (model), "
          f"{r['fps']:.1f} frames/s overall; "
          f"annotated output and detections.csv in {r['out']}"
          + (f"; contact sheet {r['contact_sheet']}" if r["contact_sheet"] else ""))
    if r["bad"]:
        print(f"error: {len(r['bad'])} undecodable file(s) skipped, first: {source_of(args.source, r['bad'][0])}",
              file=sys.stderr)
        return 1
    return 0


def source_of(source, name: str) -> Path:
    return Path(source) / name if Path(source).is_dir() else Path(source)


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
