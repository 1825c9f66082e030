"""Load a trained face classifier of any backend and run it on 48 px faces.

Backends: our torch checkpoints (`*.pt` written by scripts.torch_classifier) and their ONNX exports (`*.onnx`,
with class names and preprocessing in the model metadata). Every classifier reports its class names, and
callers map scores to canonical order by name, never by raw index (Ultralytics numbers classes alphabetically).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from converters.errors import EmoDetError
from converters.labels import CANONICAL_NAMES
from scripts.device import onnx_providers


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Row-wise softmax of logits / temperature; a -inf logit (a class the model lacks) gets probability 0."""
    z = logits / temperature
    p = np.exp(z - z.max(1, keepdims=True))
    return p / np.maximum(p.sum(1, keepdims=True), 1e-12)


@dataclass
class Classifier:
    names: list[str]
    prep: dict
    run: object  # callable(faces uint8 (N, S, S), tta) -> scores (N, C)
    backend: str
    weights: Path

    @property
    def tta(self) -> str:
        """The test-time augmentation this model was selected with (its checkpoint says; else none): what a
        caller that names none gets."""
        return self.prep.get("tta", "none")

    def scores(self, faces: np.ndarray, tta: str | None = None) -> np.ndarray:
        return self.run(faces, tta or self.tta)

    def label_names(self, n_classes: int = 7) -> tuple[str, ...]:
        """The classes callers receive: the canonical 7 or 8, or the model's own when it was trained on a
        dataset's own classes (labels.custom_names)."""
        from converters.labels import class_names
        canonical = set(self.names) <= set(CANONICAL_NAMES)
        return class_names(n_classes) if canonical else tuple(self.names)

    def scores_in(self, faces: np.ndarray, names, tta: str | None = None) -> np.ndarray:
        """Scores re-ordered into `names`' order by name (classes the model lacks get -inf)."""
        raw = self.scores(faces, tta)
        names = list(names)
        out = np.full((len(raw), len(names)), -np.inf, dtype=np.float64)
        for j, name in enumerate(self.names):
            if name in names:
                out[:, names.index(name)] = raw[:, j]
        return out

    def canonical_scores(self, faces: np.ndarray, n_classes: int, tta: str | None = None) -> np.ndarray:
        """Scores in canonical class order by name (a model of a dataset's own classes: in its own order)."""
        return self.scores_in(faces, self.label_names(n_classes), tta)

    def probabilities(self, faces: np.ndarray, n_classes: int, tta: str | None = None) -> np.ndarray:
        """Class probabilities in canonical order (rows sum to 1). Ultralytics classifiers already output
        probabilities; our torch/ONNX models output logits, so those go through a softmax."""
        s = self.canonical_scores(faces, n_classes, tta)
        if self.backend != "ultralytics":
            return softmax(s)
        p = np.where(np.isfinite(s), s, 0.0)
        return p / np.maximum(p.sum(1, keepdims=True), 1e-12)


def _resize(faces: np.ndarray, size: int) -> np.ndarray:
    from converters.crops import resized
    if faces.shape[1] == size:
        return faces
    return np.stack([resized(f, size, size) for f in faces])


def _torch_classifier(path: Path, input_size: int | None = None) -> Classifier:
    import torch
    from dataclasses import replace
    from scripts.torch_classifier import predict_logits
    from scripts.torch_models import load_checkpoint
    model, prep, names, _ = load_checkpoint(path)
    if input_size and input_size != prep.input_size:
        # the same crop of the face at another resolution: how the model fares on faces of another size
        prep = replace(prep, input_size=input_size, source_size=round(prep.source_size * input_size / prep.input_size))

    def run(faces, tta):
        with torch.no_grad():
            return predict_logits(model, _resize(faces, prep.source_size), prep, tta)
    return Classifier(names, prep.__dict__, run, "torch", path)


def _onnx_classifier(path: Path, threads: int | None = None) -> Classifier:
    import onnxruntime as ort
    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
    try:
        sess = ort.InferenceSession(str(path), opts, providers=onnx_providers())
    except Exception as exc:  # onnxruntime raises its own types for a truncated or foreign file
        raise EmoDetError(f"{path}: not a loadable ONNX model ({type(exc).__name__})") from None
    meta = sess.get_modelmeta().custom_metadata_map
    if "names" not in meta:
        raise EmoDetError(f"{path}: ONNX model has no 'names' metadata (export it with `make export`)")
    names, prep = json.loads(meta["names"]), json.loads(meta["preprocess"])
    input_name = sess.get_inputs()[0].name

    def run(faces, tta):
        from scripts.torch_classifier import tta_views
        x = (_resize(faces, prep["source_size"]).astype(np.float32) / 255.0 - prep["mean"]) / prep["std"]
        views = tta_views(x[:, None], prep["input_size"], tta)
        # the views of a few faces go through in one call (a single face with flip TTA is one batch of 2, not
        # two calls); chunks keep a ten-crop pass over a whole split within memory
        step = max(1, 512 // len(views))
        out = []
        for i in range(0, len(x), step):
            batch = np.ascontiguousarray(np.concatenate([v[i:i + step] for v in views]))
            logits = sess.run(None, {input_name: batch})[0]
            out.append(logits.reshape(len(views), -1, logits.shape[-1]).mean(0))
        return np.concatenate(out) if out else np.zeros((0, len(names)), np.float32)
    return Classifier(names, prep, run, "onnx", path)


def _ultralytics_classifier(path: Path) -> Classifier:
    """An Ultralytics -cls checkpoint; its class indices are alphabetical folder names, so we keep its names."""
    import cv2
    from scripts.ultra_env import ultralytics
    model = ultralytics().YOLO(str(path), task="classify")
    names = [model.names[i] for i in range(len(model.names))]
    imgsz = int(model.model.args.get("imgsz", 64)) if isinstance(model.model.args, dict) else 64

    def run(faces, tta):
        if tta != "none":
            raise EmoDetError("ten-crop TTA is for the torch/ONNX FER models; Ultralytics classifiers take tta=none")
        out = []
        for i in range(0, len(faces), 256):
            batch = [cv2.cvtColor(f, cv2.COLOR_GRAY2BGR) if f.ndim == 2 else f for f in faces[i:i + 256]]
            out.extend(r.probs.data.float().numpy() for r in model.predict(batch, imgsz=imgsz, device="cpu",
                                                                           verbose=False))
        return np.stack(out)
    return Classifier(names, dict(input_size=imgsz), run, "ultralytics", path)


def checkpoint(path: Path):
    """torch.load of a checkpoint, or one line naming the file when it is text, truncated or not a checkpoint."""
    import pickle
    import zipfile
    import torch
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except (pickle.UnpicklingError, zipfile.BadZipFile, EOFError, RuntimeError, ValueError, AttributeError,
            ModuleNotFoundError) as exc:
        raise EmoDetError(f"{path}: not a PyTorch checkpoint ({type(exc).__name__})") from None


def _is_ultralytics_checkpoint(path: Path) -> bool:
    from scripts.ultra_env import offline_env
    offline_env()
    ck = checkpoint(path)
    return isinstance(ck, dict) and "arch" not in ck and ("model" in ck or "ema" in ck)


def load_classifier(weights: Path, threads: int | None = None, input_size: int | None = None) -> Classifier:
    """`input_size` (EmoDet torch checkpoints of fully convolutional models) renders the face crop at another
    resolution than the model was made for."""
    weights = Path(weights)
    if not weights.exists():
        raise EmoDetError(f"{weights}: no such weights file")
    if input_size and (weights.suffix != ".pt" or _is_ultralytics_checkpoint(weights)):
        raise EmoDetError(f"{weights}: another input size works with EmoDet torch checkpoints (.pt) only")
    if weights.suffix == ".onnx":
        return _onnx_classifier(weights, threads)
    if weights.suffix == ".pt":
        return (_ultralytics_classifier(weights) if _is_ultralytics_checkpoint(weights)
                else _torch_classifier(weights, input_size))
    raise EmoDetError(f"{weights}: unknown classifier format (expected .pt or .onnx)")
