"""One-stage detectors at inference: the letterbox, the decoding of YOLOv8-style outputs (4 box rows + one score
row per class, anchors at strides 8/16/32) with class-wise NMS, flip averaging, and the two runtimes (ONNX Runtime,
PyTorch) behind one call: image in, (n, 6) class, score, x1, y1, x2, y2 in pixels out."""
from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np

from converters.crops import grey_bgr
from converters.errors import EmoDetError
from scripts.device import onnx_providers
from scripts.ultra import INPUT_KEY


def letterbox(image: np.ndarray, size: int, fill: float = 1.0
              ) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
    """The image as Ultralytics' val feeds it: the long side resized to `size` (sides rounded up, bilinear, as
    its dataset loader does), centred on a grey (114) size x size canvas. Returns the canvas, the x and y scale
    actually applied and the padding. Any other rounding or interpolation shifts the class scores by a few
    hundredths (measured: mAP@0.5 0.591 against the engine's 0.580 on the same 120 scenes with area averaging;
    identical predictions this way). With `fill` < 1 the long side is `fill` x `size`, the rest grey margin."""
    h, w = image.shape[:2]
    gain = min(size * fill / h, size * fill / w)
    nh, nw = max(1, min(math.ceil(h * gain), size)), max(1, min(math.ceil(w * gain), size))
    top, left = round((size - nh) / 2 - 0.1), round((size - nw) / 2 - 0.1)
    canvas = np.full((size, size, 3), 114, np.uint8)
    canvas[top:top + nh, left:left + nw] = image if (nh, nw) == (h, w) else cv2.resize(
        image, (nw, nh), interpolation=cv2.INTER_LINEAR)
    return canvas, (nw / w, nh / h), (left, top)


class Pass(NamedTuple):
    """An extra inference pass: the photo letterboxed into a `size` px input, its long side filling `fill` of it
    (the rest grey margin), giving its opinion on faces whose long side is at least `faces_from` of the photo's
    (LetterboxDetector.pass_scores)."""
    size: int
    fill: float = 1.0
    faces_from: float = 0.0


class CropPass(NamedTuple):
    """An extra pass over crops of the photo: each face the main pass finds whose long side is at most `faces_to`
    of the photo's is cut out as a square `context` times its long side (centred; grey beyond the photo's edge)
    and read at `size` px, all crops in one batch, giving its opinion on that face (LetterboxDetector.crop_scores).
    For small faces: the main pass sees them at a few dozen pixels, a crop near their own resolution."""
    size: int
    context: float = 1.2
    faces_to: float = 0.3


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
    extra_passes: tuple[Pass, ...] = ()  # further passes, each a second opinion on the main pass's large boxes
    grey: bool = False  # the detector was trained on grey input (its checkpoint says so): colour is dropped first

    def __init__(self, multi_label: bool = False, max_det: int = 300, flip: bool = False):
        self.multi_label, self.max_det, self.flip = multi_label, max_det, flip

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The network's output (4 + classes, anchors) for one input (1, 3, size, size); a detector gives this or
        raw_batch."""
        raise NotImplementedError

    def raw_batch(self, x: np.ndarray) -> np.ndarray:
        """raw for a batch of inputs (b, 3, size, size) -> (b, 4 + classes, anchors); the runtimes run it at once
        (what the detector runs: the crops of a crop pass go as one batch)."""
        return np.stack([self.raw(one[None]) for one in x])

    def outputs(self, x: np.ndarray) -> np.ndarray:
        """raw_batch, flip-averaged when the detector flips."""
        out = self.raw_batch(x)
        if self.flip:
            mirrored = self.raw_batch(np.ascontiguousarray(x[..., ::-1]))
            out = np.stack([flip_averaged(o, m, x.shape[-1]) for o, m in zip(out, mirrored)])
        return out

    def __call__(self, image: np.ndarray, conf: float, iou: float) -> np.ndarray:
        """(n, 6) class, score, x1, y1, x2, y2 in pixels of `image`, best first."""
        return self.with_scores(image, conf, iou)[0]

    def network_input(self, image: np.ndarray, size: int, fill: float = 1.0
                      ) -> tuple[np.ndarray, tuple[float, float], tuple[int, int]]:
        """(the (1, 3, size, size) RGB float input the network is given for `image`, the letterbox's scale and
        padding): letterboxed (`fill`: letterbox), grey where the detector was trained on grey."""
        padded, scale, pad = letterbox(image, size, fill)
        if self.grey:
            padded = grey_bgr(padded)
        return np.ascontiguousarray(padded[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255.0, scale, pad

    def pass_outputs(self, image: np.ndarray, size: int, fill: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
        """(boxes x, y, w, h in pixels of `image` (anchors, 4), class scores (classes, anchors)) of every anchor,
        with the image letterboxed to `size` (`fill`: letterbox)."""
        x, scale, pad = self.network_input(image, size, fill)
        return unletterboxed(self.outputs(x)[0], scale, pad)

    def crop_outputs(self, image: np.ndarray, faces: np.ndarray, p: CropPass) -> list[tuple[np.ndarray, np.ndarray]]:
        """pass_outputs of each face's crop (square_crop; faces x, y, w, h in pixels of `image`), its boxes in
        pixels of `image`; the crops run as one batch."""
        crops = [square_crop(image, face, p.context) for face in faces]
        inputs = [self.network_input(crop, p.size) for crop, _ in crops]
        out = self.outputs(np.concatenate([x for x, _, _ in inputs]))
        found = []
        for o, (_, scale, pad), (_, corner) in zip(out, inputs, crops):
            boxes, scores = unletterboxed(o, scale, pad)
            found.append((boxes + np.array([*corner, 0, 0], np.float32), scores))
        return found

    def crop_scores(self, image: np.ndarray, boxes: np.ndarray, scores: np.ndarray, p: CropPass) -> np.ndarray:
        """The main pass's class scores with a crop pass's opinion joined in. Its faces: the surest box of each
        group of overlapping ones (NMS at IoU 0.5) scoring >= CROP_FACE_MIN, long side at most `p.faces_to` of
        the photo's, at most MAX_CROPS; each is read from its crop, the opinion being the crop's surest box over
        the face (IoU >= 0.5). Every main-pass box over a face (its best, IoU >= 0.5) takes joined_opinion of its
        scores and that opinion, at its own confidence, and the box that fits the face best at the surer of its
        own and the crop's (on FER-scenes val with crops 1.6 times the face, mAP@0.5 0.591 against 0.577 with
        every box at its own confidence)."""
        conf = scores.max(0)
        small = np.flatnonzero((boxes[:, 2:].max(1) <= p.faces_to * max(image.shape[:2])) & (conf >= OPINION_MIN))
        sure = small[conf[small] >= CROP_FACE_MIN]
        if not len(sure):  # no small face: no crop is read (most photos of one large face)
            return scores
        faces = boxes[sure[one_per_face(boxes[sure], conf[sure], CROP_FACE_MIN)[:MAX_CROPS]]]
        opinions = np.full((scores.shape[0], len(faces)), np.nan, np.float32)
        for i, (b, s) in enumerate(self.crop_outputs(image, faces, p)):
            over = (xywh_iou(b, faces[i:i + 1])[:, 0] >= 0.5) & (s.max(0) >= OPINION_MIN)
            if over.any():
                seen = s[:, over]
                opinions[:, i] = seen[:, seen.max(0).argmax()]
        iou = xywh_iou(boxes[small], faces)
        best = iou.argmax(1)
        joined = (iou.max(1) >= 0.5) & ~np.isnan(opinions[0, best])
        if not joined.any():  # no crop saw its face
            return scores
        face = best[joined]
        lead = best_fitting(np.where(face[:, None] == np.arange(len(faces))[None], iou[joined], -1))
        scores = scores.copy()
        scores[:, small[joined]] = opinion_with_lead(scores[:, small[joined]], opinions[:, face], lead)
        return scores

    def pass_scores(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(boxes, class scores) of every anchor of the main pass, each extra pass's opinion joined in: a box of the
        main pass as large as an extra pass is there for (from its `faces_from` up) takes joined_opinion of its
        class scores and those of the extra pass's surest box over it (IoU >= 0.5), at its own confidence, or
        the surer pass's for the box that fits the extra pass's box best. The boxes stay the main
        pass's: on the validation sets, adding the extra pass's own boxes added large false faces (a shrunk
        crowd read as one face) and cost mAP, where opinions alone cost nothing."""
        boxes, scores = self.pass_outputs(image, self.imgsz)
        for p in self.extra_passes:
            if isinstance(p, CropPass):
                scores = self.crop_scores(image, boxes, scores, p)
                continue
            smallest = p.faces_from * max(image.shape[:2])  # pixels: the long side of the least face it judges
            main = np.flatnonzero((boxes[:, 2:].max(1) >= smallest) & (scores.max(0) >= OPINION_MIN))
            if not len(main):  # nothing to give an opinion on: the pass is not run (most photos of small faces)
                continue
            b, s = self.pass_outputs(image, p.size, p.fill)
            keep = np.flatnonzero((b[:, 2:].max(1) >= smallest) & (s.max(0) >= OPINION_MIN))
            if not len(keep):
                continue
            # one box per face, so one main-pass box per face leads (near-duplicates of the extra pass each made a
            # lead of their own, which NMS at 0.7 kept)
            keep = keep[one_per_face(b[keep], s[:, keep].max(0), OPINION_MIN)]
            b, s = b[keep], s[:, keep]
            iou = xywh_iou(boxes[main], b)
            overlap = iou >= 0.5
            best = np.where(overlap, s.max(0)[None], -1).argmax(1)
            matched = overlap.any(1)
            lead = best_fitting(np.where(overlap, iou, -1))
            scores = scores.copy()
            scores[:, main[matched]] = opinion_with_lead(scores[:, main[matched]], s[:, best[matched]], lead[matched])
        return boxes, scores

    def with_scores(self, image: np.ndarray, conf: float, iou: float) -> tuple[np.ndarray, np.ndarray]:
        """What __call__ returns, and each box's score for every class (n, classes): the emotion distribution
        an app shows per face. Extra passes give a second opinion on large faces (pass_scores): a detector
        whose backbone learned expressions on small faces also sees a large face at a size it knows (a pass
        that shrinks the whole photo into part of a small input); a crop pass, on small faces (crop_scores), which
        the main pass sees at a few dozen pixels."""
        all_boxes, all_scores = self.pass_scores(image)
        anchor, cls, score = candidate_detections(all_scores, self.multi_label, conf)
        boxes, scores = all_boxes[anchor], all_scores[:, anchor].T
        idx = cv2.dnn.NMSBoxesBatched(boxes.tolist(), score.tolist(), cls.tolist(), conf, iou) if len(score) else []
        idx = np.asarray(idx, int).reshape(-1)
        idx = idx[np.argsort(-score[idx], kind="stable")][:self.max_det]
        b = boxes[idx]
        hh, ww = image.shape[:2]
        det = np.c_[cls[idx], score[idx], np.clip(b[:, 0], 0, ww), np.clip(b[:, 1], 0, hh),
                    np.clip(b[:, 0] + b[:, 2], 0, ww), np.clip(b[:, 1] + b[:, 3], 0, hh)]
        return det, scores[idx]


# class score under which a box is not a face in any pass's opinion: the floor every detection is scored from.
# Why so low: a face filling the photo can score under 0.01 in the main pass and clearly in the second pass,
# which only judges the main pass's boxes (on faces-in-the-wild val, one large face a photo, at 256 px: face
# recall 0.994 from 0.001, 0.989 from 0.01)
OPINION_MIN = 0.001
CROP_FACE_MIN = 0.1  # a crop pass reads faces the main pass scores at least this sure (fewer, cheaper crops)
MAX_CROPS = 8  # and at most this many per photo, the surest: a crowd costs a bounded time (about 1.5 ms a crop)


def unletterboxed(out: np.ndarray, scale: tuple[float, float], pad: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """(boxes x, y, w, h in pixels of the letterboxed image (anchors, 4), class scores (classes, anchors)) of one
    raw output, given the letterbox's scale and padding."""
    (sx, sy), (left, top) = scale, pad
    cx, cy, w, h = out[:4]
    return np.stack([(cx - w / 2 - left) / sx, (cy - h / 2 - top) / sy, w / sx, h / sy], 1), out[4:]


def square_crop(image: np.ndarray, box, context: float) -> tuple[np.ndarray, tuple[int, int]]:
    """(the square `context` x the long side of `box` (x, y, w, h) centred on it, grey (114, the letterbox's
    margin) beyond the image's edge; the crop's top-left corner in pixels of `image`). The face stays centred
    at an edge, as in every other crop."""
    x, y, w, h = box
    side = max(1, round(max(w, h) * context))
    left, top = round(x + w / 2 - side / 2), round(y + h / 2 - side / 2)
    crop = np.full((side, side, 3), 114, np.uint8)
    hh, ww = image.shape[:2]
    x0, y0, x1, y1 = max(left, 0), max(top, 0), min(left + side, ww), min(top + side, hh)
    if x1 > x0 and y1 > y0:
        crop[y0 - top:y1 - top, x0 - left:x1 - left] = image[y0:y1, x0:x1]
    return crop, (left, top)


def one_per_face(boxes: np.ndarray, conf: np.ndarray, floor: float) -> np.ndarray:
    """Indices of the surest box (x, y, w, h) of each group of overlapping ones (NMS at IoU 0.5, scores above
    `floor`), surest first: one box a face, what an extra pass reads or judges by."""
    return np.asarray(cv2.dnn.NMSBoxes(boxes.tolist(), conf.tolist(), floor, 0.5), int).reshape(-1)


def best_fitting(fit: np.ndarray) -> np.ndarray:
    """Which boxes fit a face best, given `fit` (boxes, faces): each box's IoU with each face, -1 where it is not
    over that face. One box per face takes the surer pass's confidence (opinion_with_lead): lifting every box over a
    face alike left near-duplicates that NMS at IoU 0.7 keeps."""
    lead = np.zeros(len(fit), bool)
    lead[fit.argmax(0)[fit.max(0) >= 0]] = True
    return lead


def opinion_with_lead(a: np.ndarray, b: np.ndarray, lead: np.ndarray) -> np.ndarray:
    """joined_opinion of two passes' class scores (classes, boxes), each box at its own confidence (a's top score)
    and the `lead` boxes (best_fitting) at the surer pass's."""
    return joined_opinion(a, b, np.where(lead, np.maximum(a.max(0), b.max(0)), a.max(0)))


def joined_opinion(a: np.ndarray, b: np.ndarray, confidence: np.ndarray) -> np.ndarray:
    """Two passes' class scores (classes, boxes) of the same faces as one: the classes in the proportions of their
    mean, scaled to `confidence` (the top score each box gets), so that a second opinion can change a face's
    emotion without losing a face the main pass found."""
    mean = (a + b) / 2
    return mean * (confidence / np.maximum(mean.max(0), 1e-9))


def xywh_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of boxes x, y, w, h."""
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
    y2 = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return inter / np.maximum(union, 1e-9)


SCALES_KEY = "emodet_extra_sizes"  # ONNX metadata / checkpoint key: the extra passes a model is used at
# ONNX metadata / checkpoint key: the main pass's input size where it was chosen apart from the training size (on
# validation, for speed); otherwise the training size is the default
IMGSZ_KEY = "emodet_imgsz"


def _sizes(text) -> tuple[int, ...]:
    return tuple(int(v) for v in str(text).replace(" ", "").split(",") if v) if text not in (None, "") else ()


CROP_PREFIX = "crop"  # a crop pass's text form: "crop64:1.2:0.3" (CropPass)


def parse_passes(text, where="extra passes") -> tuple[Pass | CropPass, ...]:
    """Extra inference passes from their text form, comma-separated "PX[:FILL[:FROM]]" (Pass) or
    "cropPX[:CONTEXT[:TO]]" (CropPass): "256" (the photo fills a 256 px input, as in the main pass),
    "128:0.67:0.4" (the photo shrunk into 0.67 of a 128 px input, for faces from 0.4 of the photo up),
    "crop64:1.2:0.3" (each face up to 0.3 of the photo cut out 1.2 times its size and read at 64 px)."""
    if text in (None, ""):
        return ()
    out = []
    for item in (str(text).replace(" ", "").split(",") if isinstance(text, str) else text):
        if isinstance(item, (Pass, CropPass)):
            out.append(item)
            continue
        crop = isinstance(item, str) and item.startswith(CROP_PREFIX)
        parts = list(item) if isinstance(item, (tuple, list)) else str(item).removeprefix(CROP_PREFIX).split(":")
        defaults = list(CropPass._field_defaults.values()) if crop else [1.0, 0.0]
        try:
            if not 1 <= len(parts) <= 3:
                raise ValueError
            size, first, last = int(parts[0]), *(float(v) for v in (parts[1:] + defaults[len(parts) - 1:]))
        except ValueError:
            raise EmoDetError(f"{where}: {item!r} is not PX, PX:FILL or PX:FILL:FROM (e.g. 128:0.67:0.4), nor "
                              "cropPX, cropPX:CONTEXT or cropPX:CONTEXT:TO (e.g. crop64:1.2:0.3)") from None
        if crop:
            if not first >= 1 or not 0 < last <= 1:
                raise EmoDetError(f"{where}: {item!r}: CONTEXT must be at least 1 and TO lie in (0, 1]")
            out.append(CropPass(checked_imgsz(size, where), first, last))
            continue
        if not 0 < first <= 1 or not 0 <= last < 1:
            raise EmoDetError(f"{where}: {item!r}: FILL must lie in (0, 1] and FROM in [0, 1)")
        out.append(Pass(checked_imgsz(size, where), first, last))
    return tuple(out)


def passes_text(passes) -> str:
    """The text form parse_passes reads (what the checkpoint and the ONNX metadata carry)."""
    def one(p):
        if isinstance(p, CropPass):
            return CROP_PREFIX + ":".join(f"{v:g}" for v in p)
        return ":".join(f"{v:g}" for v in p[:3 if p.faces_from else 2 if p.fill != 1 else 1])
    return ",".join(one(p) for p in passes)


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

    def __init__(self, path: Path, imgsz: int, threads: int | None = None, extra_passes=None, **decode):
        import onnxruntime as ort
        super().__init__(**decode)
        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.sess = ort.InferenceSession(str(path), opts, providers=onnx_providers())
        except Exception as exc:
            raise EmoDetError(f"{path}: not a loadable ONNX model ({type(exc).__name__})") from None
        self.input = self.sess.get_inputs()[0].name
        shape = self.sess.get_inputs()[0].shape
        meta = self.sess.get_modelmeta().custom_metadata_map
        self.dynamic = not isinstance(shape[-1], int)
        carried = meta.get(IMGSZ_KEY) or meta.get("imgsz")  # the chosen size, else the export's (Ultralytics)
        trained = _sizes(str(carried).strip("[]").split(",")[0]) if carried else ()
        if not self.dynamic and imgsz and imgsz != shape[-1]:
            raise EmoDetError(f"{path}: exported for {shape[-1]} px input, not {imgsz}; use the .pt, or export it "
                              "with a dynamic input (python -m scripts.export <weights>.pt --extra-sizes ...)")
        self.imgsz = checked_imgsz(imgsz or (trained[0] if trained else 256), path) if self.dynamic else shape[-1]
        self.names = _names_from_metadata(meta.get("names"))
        self.grey = meta.get(INPUT_KEY) == "grey"
        # extra passes need an export with dynamic axes (scripts.export --extra-passes writes both)
        self.extra_passes = parse_passes(meta.get(SCALES_KEY) if extra_passes is None else extra_passes, path)
        if self.extra_passes and not self.dynamic:
            raise EmoDetError(f"{path}: exported for {shape[-1]} px input only, so no extra passes; export it with "
                              "a dynamic input (python -m scripts.export <weights>.pt --extra-passes ...)")

    def raw_batch(self, x: np.ndarray) -> np.ndarray:
        return self.sess.run(None, {self.input: x})[0]


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

    def __init__(self, path: Path, imgsz: int | None, device: str = "cpu", extra_passes=None, **decode):
        from scripts.device import torch_device
        from scripts.ultra_env import ultralytics
        super().__init__(**decode)
        self.device = torch_device(device)
        try:
            yolo = ultralytics().YOLO(str(path), task="detect")
            self.net = yolo.model.float().eval().to(self.device)
        except Exception as exc:  # a text file, a truncated download, another framework's pickle
            raise EmoDetError(f"{path}: not an Ultralytics checkpoint ({type(exc).__name__})") from None
        chosen = _sizes((yolo.ckpt or {}).get(IMGSZ_KEY))
        self.imgsz = checked_imgsz(imgsz or (chosen and chosen[0]) or checkpoint_imgsz(self.net) or 256, path)
        names = getattr(self.net, "names", None)
        self.names = [names[i] for i in sorted(names)] if isinstance(names, dict) else None
        self.grey = (yolo.ckpt or {}).get(INPUT_KEY) == "grey"
        self.extra_passes = parse_passes((yolo.ckpt or {}).get(SCALES_KEY) if extra_passes is None else
                                         extra_passes, path)

    def raw_batch(self, x: np.ndarray) -> np.ndarray:
        import torch
        with torch.inference_mode():
            out = self.net(torch.from_numpy(x).to(self.device))
        return (out[0] if isinstance(out, (list, tuple)) else out).float().cpu().numpy()


def load_detector(weights: Path, imgsz: int | None = None, device: str | None = None, **decode) -> LetterboxDetector:
    """A detector file as a callable detector: ONNX Runtime for .onnx (CUDA provider when onnxruntime-gpu and a GPU
    are there), PyTorch for an Ultralytics .pt on `device` (resolved: cpu, 0, ...; default the CPU)."""
    weights = Path(weights)
    if not weights.exists():
        raise EmoDetError(f"{weights}: no such weights file")
    if weights.suffix == ".onnx":
        return OnnxDetector(weights, imgsz, **decode)
    return TorchDetector(weights, imgsz, device or "cpu", **decode)
