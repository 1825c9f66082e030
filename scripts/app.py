"""`make app`: a local web app to look at emotion detection on photos, video and the webcam.

Served on 127.0.0.1 only and fully offline: Gradio's analytics are off, its default theme's fonts are bundled
(no web fonts), and the page loads nothing from elsewhere (tests/test_app.py records every request the browser
makes). Why Gradio rather than Streamlit: its Image component has the browser's webcam capture built in, a
Gallery, a DataFrame and a bar plot come ready, and one Python function per button keeps the app a thin layer over
scripts.predict and scripts.two_stage.

  python -m scripts.app [--port 7860] [--detector W] [--classifier C]
"""
from __future__ import annotations

import argparse
import atexit
import csv
import functools
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

from converters.errors import EmoDetError, run_cli
from converters.io import IMAGE_SUFFIXES, VIDEO_SUFFIXES
from converters.settings import DEFAULT_DETECTOR, DEFAULT_CLASSIFIER
from eval.plots import annotated_image

METHODS = ("one-stage", "two-stage", "hybrid")
MAX_UPLOAD_MB = 50          # larger uploads are refused by the server before they reach us
MAX_PIXELS = 40_000_000     # a JPEG header may claim 30000 x 30000: refused before decoding
VIDEO_FRAMES = 16           # frames of a video analysed, spread over the clip
TABLE_COLUMNS = ["file", "frame", "face", "emotion", "score", "x1", "y1", "x2", "y2"]


def offline_env() -> None:
    """Before gradio is imported: no analytics, no version check, no hub calls."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


class UploadError(Exception):
    """An upload we cannot analyse; its message is shown on the page."""


class Analyzer:
    """The three detection methods over one detector and one classifier, built on first use."""

    def __init__(self, detector: Path = DEFAULT_DETECTOR, classifier: Path = DEFAULT_CLASSIFIER):
        self.detector_path, self.classifier_path = Path(detector), Path(classifier)
        self._built: dict = {}

    def method(self, name: str):
        if name not in self._built:
            from scripts import two_stage
            from scripts.detectors import load_detector
            if name == "one-stage":
                self._built[name] = load_detector(self.detector_path)
            elif name == "two-stage":
                fit = Path("weights/haar-box-fit-photos.json")
                self._built[name] = two_stage.TwoStageDetector(self.classifier_path, two_stage.load_fit(
                    fit if fit.exists() else None))
            elif name == "hybrid":
                faces = two_stage.DetectorFaces(self.method("one-stage"))
                self._built[name] = two_stage.TwoStageDetector(self.classifier_path, faces=faces)
            else:
                raise UploadError(f"unknown method {name!r}; choose one of {', '.join(METHODS)}")
        return self._built[name]

    def names(self, method: str = "one-stage") -> list[str]:
        """The classes a method reports: the detector's for one-stage, the classifier's for the others (a model of
        a dataset's own classes brings its own names)."""
        from converters.labels import class_names
        return list(getattr(self.method(method), "names", None) or class_names(7))

    def analyze(self, image: np.ndarray, method: str, conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(annotated BGR image, detections (n, 6) in pixels, per-face emotion distribution (n, classes))."""
        det, scores = self.method(method).with_scores(image, conf, 0.7)
        h, w = image.shape[:2]
        norm = np.c_[det[:, :2], det[:, 2:] / [w, h, w, h]] if len(det) else np.zeros((0, 6))
        total = scores.sum(1, keepdims=True)
        return annotated_image(image, norm, self.names(method)), det, scores / np.where(total > 0, total, 1)


def upload_frames(path: Path) -> list[tuple[int, np.ndarray]]:
    """(frame index, BGR image) of an uploaded image, or VIDEO_FRAMES frames spread over a video; UploadError
    with a sentence for anything else."""
    path = Path(path)
    suffix = path.suffix.lower()
    if path.stat().st_size > MAX_UPLOAD_MB * 2 ** 20:
        raise UploadError(f"{path.name}: larger than {MAX_UPLOAD_MB} MB")
    if suffix in VIDEO_SUFFIXES:
        cap = cv2.VideoCapture(str(path))
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) if cap.isOpened() else 0
        wanted = set(np.linspace(0, max(n - 1, 0), min(VIDEO_FRAMES, max(n, 1))).round().astype(int).tolist())
        out, k = [], 0
        while cap.isOpened():
            ok, img = cap.read()
            if not ok:
                break
            if k in wanted:
                out.append((k, img))
            k += 1
        cap.release()
        if not out:
            raise UploadError(f"{path.name}: not a readable video")
        return out
    if suffix not in IMAGE_SUFFIXES:
        raise UploadError(f"{path.name}: not an image or a video ({', '.join((*IMAGE_SUFFIXES, *VIDEO_SUFFIXES))})")
    from PIL import Image
    try:
        with Image.open(path) as im:
            if im.size[0] * im.size[1] > MAX_PIXELS:
                raise UploadError(f"{path.name}: {im.size[0]} x {im.size[1]} pixels is more than this app decodes")
    except UploadError:
        raise
    except Image.DecompressionBombError:
        raise UploadError(f"{path.name}: more pixels than this app decodes (over {MAX_PIXELS:,})") from None
    except Exception:
        raise UploadError(f"{path.name}: not a readable image (corrupt or of another type)") from None
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise UploadError(f"{path.name}: not a readable image (corrupt or truncated)")
    return [(0, img)]


def analyze_uploads(analyzer: Analyzer, files: list, method: str, conf: float):
    """Everything the page shows for a set of uploads: gallery items, face table rows, bar rows, CSV path, and
    the status message (which names every upload that could not be analysed)."""
    gallery, table, bars, problems = [], [], [], []
    names = analyzer.names(method)
    for f in files or []:
        path = Path(f if isinstance(f, (str, Path)) else f.name)  # gradio gives paths; old versions tempfiles
        try:
            for k, img in upload_frames(path):
                drawn, det, dist = analyzer.analyze(img, method, conf)
                label = path.name if k == 0 else f"{path.name} frame {k}"
                gallery.append((cv2.cvtColor(drawn, cv2.COLOR_BGR2RGB), label))
                for i, ((c, s, x1, y1, x2, y2), p) in enumerate(zip(det, dist), start=1):
                    table.append([path.name, k, i, names[int(c)], round(float(s), 3),
                                  *(int(round(v)) for v in (x1, y1, x2, y2))])
                    face = f"{label} #{i}"
                    bars.extend([face, n, float(q)] for n, q in zip(names, p))
        except UploadError as e:
            problems.append(str(e))
    faces = len(table)
    status = f"{len(gallery)} image(s), {faces} face(s) found ({method}, confidence >= {conf:.2f})."
    if problems:
        status += " Not analysed: " + "; ".join(problems)
    csv_path = None
    if table:
        fd, name = tempfile.mkstemp(prefix="faces-", suffix=".csv", dir=scratch_dir())
        with os.fdopen(fd, "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(TABLE_COLUMNS)
            w.writerows(table)
        csv_path = name
    return gallery, table, bars, csv_path, status


@functools.cache
def scratch_dir() -> Path:
    """This process's folder for the files the app makes (each request's faces table, webcam pictures): one
    folder, removed when the process exits, so a long-running app or a test run leaves nothing behind in /tmp.
    A file handed to Gradio is fetched while the app runs, so none needs to outlive the process."""
    path = Path(tempfile.mkdtemp(prefix="emodet-app-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def capture_file(rgb: np.ndarray) -> Path:
    """A webcam picture (RGB, as the browser sends it) saved as a PNG upload, so it takes the uploads' path."""
    path = Path(tempfile.mkdtemp(prefix="cam-", dir=scratch_dir())) / "webcam.png"
    cv2.imwrite(str(path), cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR))
    return path


def build_app(analyzer: Analyzer):
    offline_env()
    import gradio as gr
    import pandas as pd

    def run(files, method, conf):
        try:
            gallery, table, bars, csv_path, status = analyze_uploads(analyzer, files, method, conf)
        except Exception as e:  # never a stack trace on the page
            return [], pd.DataFrame(columns=TABLE_COLUMNS), None, None, f"Could not analyse: {type(e).__name__}: {e}"
        return (gallery, pd.DataFrame(table, columns=TABLE_COLUMNS),
                pd.DataFrame(bars, columns=["face", "emotion", "probability"]), csv_path, status)

    def run_webcam(image, method, conf):
        if image is None:
            return [], pd.DataFrame(columns=TABLE_COLUMNS), None, None, "No capture yet: take a picture first."
        return run([capture_file(image)], method, conf)

    with gr.Blocks(title="EmoDet", analytics_enabled=False) as app:
        gr.Markdown("## EmoDet: facial expressions in photos, video and the webcam\nUpload photos or a video, or "
                    "take a webcam picture; choose the method and the confidence. Runs on this machine only.")
        with gr.Row():
            with gr.Column(scale=1):
                files = gr.File(label="photos or a video", file_count="multiple", elem_id="uploads")
                cam = gr.Image(label="webcam", sources=["webcam"], type="numpy", elem_id="webcam")
                method = gr.Radio(list(METHODS), value="one-stage", label="method", elem_id="method",
                                  info="one-stage: the detector alone; two-stage: OpenCV Haar faces + the FER "
                                       "classifier; hybrid: the detector's faces + the classifier")
                conf = gr.Slider(0.05, 0.95, value=0.25, step=0.05, label="confidence", elem_id="conf")
                with gr.Row():
                    go = gr.Button("Analyse uploads", variant="primary", elem_id="analyse")
                    go_cam = gr.Button("Analyse webcam picture", elem_id="analyse-cam")
            with gr.Column(scale=2):
                status = gr.Markdown(elem_id="status")
                gallery = gr.Gallery(label="annotated", columns=3, height=420, elem_id="gallery")
                table = gr.Dataframe(headers=TABLE_COLUMNS, label="faces", elem_id="faces", interactive=False)
                bars = gr.BarPlot(x="face", y="probability", color="emotion", label="emotion per face (shares)",
                                  elem_id="bars")
                download = gr.File(label="faces.csv", elem_id="csv")
        outputs = [gallery, table, bars, download, status]
        go.click(run, [files, method, conf], outputs)
        go_cam.click(run_webcam, [cam, method, conf], outputs)
    return app


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.app", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", type=int, default=7860)
    p.add_argument("--detector", type=Path, default=DEFAULT_DETECTOR)
    p.add_argument("--classifier", type=Path, default=DEFAULT_CLASSIFIER)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for w in (args.detector, args.classifier):
        if not w.exists():
            raise EmoDetError(f"{w}: no such weights file")
    app = build_app(Analyzer(args.detector, args.classifier))
    print(f"EmoDet app on http://127.0.0.1:{args.port} (Ctrl-C stops it)")
    app.launch(server_name="127.0.0.1", server_port=args.port, share=False, max_file_size=f"{MAX_UPLOAD_MB}mb",
               show_error=False, quiet=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
