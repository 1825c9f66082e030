"""Face crops: pure geometry on boxes and landmarks, and the crop/resize/align of one face."""
from __future__ import annotations

import math

import cv2
import numpy as np

# Output eye centres for aligned crops, as fractions of the crop side: eyes level, 40 % of the side apart,
# the usual FER alignment (eyes in the upper-middle third).
ALIGNED_EYES = ((0.3, 0.38), (0.7, 0.38))
LEFT_EYE, RIGHT_EYE = slice(36, 42), slice(42, 48)  # iBUG 68-point indices


def scaled_box(box, scale: float, width: int, height: int) -> tuple[float, float, float, float]:
    """Box enlarged by `scale` about its centre, then clipped to the image: (x, y, w, h)."""
    x, y, w, h = box
    cx, cy = x + w / 2, y + h / 2
    w2, h2 = w * scale / 2, h * scale / 2
    x1, y1 = max(0.0, cx - w2), max(0.0, cy - h2)
    x2, y2 = min(float(width), cx + w2), min(float(height), cy + h2)
    return x1, y1, x2 - x1, y2 - y1


def decode_factor(boxes, target: int) -> int:
    """Largest JPEG DCT scale-down (1, 2, 4, 8) that keeps every face box at least `target` pixels on its short side."""
    short = min(min(b[2], b[3]) for b in boxes)
    for f in (8, 4, 2):
        if short / f >= target:
            return f
    return 1


# OpenCV's read flag for a JPEG decoded at 1/factor (libjpeg's DCT scaling), (grey, colour)
_REDUCED = {1: (cv2.IMREAD_GRAYSCALE, cv2.IMREAD_COLOR),
            2: (cv2.IMREAD_REDUCED_GRAYSCALE_2, cv2.IMREAD_REDUCED_COLOR_2),
            4: (cv2.IMREAD_REDUCED_GRAYSCALE_4, cv2.IMREAD_REDUCED_COLOR_4),
            8: (cv2.IMREAD_REDUCED_GRAYSCALE_8, cv2.IMREAD_REDUCED_COLOR_8)}


def reduced_flag(factor: int, grey: bool = True) -> int:
    """cv2.imread/imdecode's flag for a JPEG decoded at 1/`factor` (1, 2, 4, 8), grey or colour."""
    return _REDUCED[factor][0 if grey else 1]


def decoded_shape(width: int, height: int, factor: int) -> tuple[int, int]:
    """(height, width) of a `width` x `height` JPEG decoded at 1/`factor`: libjpeg rounds up."""
    return math.ceil(height / factor), math.ceil(width / factor)


def pixel_box(box, factor: int, shape) -> tuple[int, int, int, int]:
    """Integer (x1, y1, x2, y2) of a full-resolution box in an image decoded at 1/`factor`, at least 1 px wide."""
    h, w = shape[:2]
    x, y, bw, bh = (v / factor for v in box)
    x1, y1 = min(int(round(x)), w - 1), min(int(round(y)), h - 1)
    x2, y2 = max(min(int(round(x + bw)), w), x1 + 1), max(min(int(round(y + bh)), h), y1 + 1)
    return x1, y1, x2, y2


def box_matrix(box, factor: int, shape, size: int) -> np.ndarray:
    """2x3 affine mapping full-resolution pixels into the size x size crop of `box` (see `box_crop`)."""
    x1, y1, x2, y2 = pixel_box(box, factor, shape)
    sx, sy = size / (x2 - x1), size / (y2 - y1)
    return np.array([[sx / factor, 0, -x1 * sx], [0, sy / factor, -y1 * sy]], dtype=np.float64)


def resized(image: np.ndarray, width: int, height: int) -> np.ndarray:
    """`image` at width x height: pixel areas averaged where it shrinks (bilinear would alias small detail such as
    a small face's expression away), bilinear where it only grows."""
    shrink = width < image.shape[1] or height < image.shape[0]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


def box_crop(image: np.ndarray, box, factor: int, shape, size: int) -> np.ndarray:
    """`image[y:y+h, x:x+w]` resized to size x size; `image` was decoded at 1/factor and `shape` is the
    decoded size predicted from the header, so a rerun that skips decoding computes the same geometry."""
    x1, y1, x2, y2 = pixel_box(box, factor, shape)
    return resized(image[y1:y2, x1:x2], size, size)


def alignment_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """2x3 similarity (full-resolution pixels -> crop) putting both eye centres level at ALIGNED_EYES."""
    src = np.stack([landmarks[LEFT_EYE].mean(0), landmarks[RIGHT_EYE].mean(0)]).astype(np.float64)
    dst = np.array(ALIGNED_EYES, dtype=np.float64) * size
    d_src, d_dst = src[1] - src[0], dst[1] - dst[0]
    scale = np.hypot(*d_dst) / max(np.hypot(*d_src), 1e-6)
    angle = np.arctan2(d_dst[1], d_dst[0]) - np.arctan2(d_src[1], d_src[0])
    r = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    t = dst[0] - r @ src[0]
    return np.hstack([r, t[:, None]])


def aligned_crop(image: np.ndarray, landmarks: np.ndarray, factor: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Eye-aligned crop from an image decoded at 1/factor, and the full-resolution -> crop affine."""
    m = alignment_matrix(landmarks, size)
    m_reduced = m.copy()
    m_reduced[:, :2] *= factor  # the image's pixel p is full-resolution pixel p*factor
    crop = cv2.warpAffine(image, m_reduced, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, m


def transform_points(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    return (np.asarray(points, dtype=np.float64) @ m[:, :2].T + m[:, 2]).astype(np.float32)


def table_pixels(crop48: np.ndarray) -> np.ndarray:
    """FER2013-style flat 2304 grey pixels of a 48 px crop (grey or BGR)."""
    grey = crop48 if crop48.ndim == 2 else cv2.cvtColor(crop48, cv2.COLOR_BGR2GRAY)
    return grey.reshape(-1)


def grey_bgr(image: np.ndarray) -> np.ndarray:
    """A BGR image as grey in all three channels: what a detector trained on grey input sees (its checkpoint says
    so), colour photos and grey ones alike."""
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), cv2.COLOR_GRAY2BGR)


def softened(image: np.ndarray, side: int) -> np.ndarray:
    """The image as if it had come from a source whose long side was `side` pixels: area-reduced to that and
    bilinearly enlarged back to its own size (no-op where it is no larger). Training on such copies stops a
    detector from telling sources (and so their label mixes) apart by sharpness alone."""
    h, w = image.shape[:2]
    r = side / max(h, w)
    if r >= 1:
        return image
    small = cv2.resize(image, (max(1, round(w * r)), max(1, round(h * r))), interpolation=cv2.INTER_AREA)
    out = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    return out.reshape(image.shape)
