"""`python -m scripts.predict SOURCE --weights W`: run a one-stage emotion detector on an image, a folder of
images or a video file; writes annotated images (or an annotated video) and one CSV of boxes
(source, frame, class, name, score, x1, y1, x2, y2 in pixels). Backends: Ultralytics `.pt` (PyTorch) or its
ONNX export (`.onnx`, run with ONNX Runtime). `--two-stage` runs the baseline instead: OpenCV's Haar face
detector + a FER classifier (scripts/two_stage.py)."""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from converters.errors import EmoDetError, run_cli
from converters.io import images_in, is_video
from converters.labels import class_names
from converters.settings import DEFAULT_DETECTOR, RUNS_DIR
from converters.progress import tracked
from eval.plots import annotated_image, contact_sheet
from scripts.detectors import load_detector
from scripts.device import DEVICE_HELP, describe, onnx_providers, resolve_device

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
        files = images_in(source)
        if not files:
            raise EmoDetError(f"{source}: no images")
        for p in files:
            img = cv2.imread(str(p))
            yield p.name, 0, img  # None: undecodable, reported and skipped by the caller
    elif is_video(source):
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
    video = live or is_video(Path(source))
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
                   help="input size (default: the size its weights carry: the one chosen for it, else the one it "
                        "was trained at)")
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.7)
    p.add_argument("--classes", type=int, choices=(7, 8), default=7)
    p.add_argument("--show", action=argparse.BooleanOptionalAction, default=None,
                   help="live window (default: when a display exists; headless otherwise)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames (live sources)")
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--flip", action="store_true",
                   help="average the detector's outputs on the image and its mirror image (2x the time; FER-scenes "
                        "val: mAP@0.5 +0.01)")
    p.add_argument("--passes", default=None, metavar="PASSES|none",
                   help="the detector's extra passes instead of those its weights carry (e.g. 128:0.67:0.45 "
                        "without the default's crop pass on small faces; none: the main pass alone, the fastest)")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not (args.two_stage or args.weights):
        args.weights = DEFAULT_DETECTOR
    device = resolve_device(args.device)
    print(f"device {describe(device)}" + (" (ONNX Runtime providers: " + ", ".join(onnx_providers()) + ")"
                                         if args.weights and Path(args.weights).suffix == ".onnx" else ""))
    passes = {} if args.passes is None else {"extra_passes": "" if args.passes == "none" else args.passes}
    detector = args.weights and load_detector(args.weights, args.imgsz, device, flip=args.flip, **passes)
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
