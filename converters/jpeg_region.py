"""The part of a JPEG that holds its faces, decoded grey at a DCT scale: the converter's decoder for AffectNet-size
photos, where a face fills about a fifth of the photo and a quarter of the photo lies below it.

OpenCV decodes every row and column; libjpeg(-turbo) itself can skip the rows above a region (entropy decoding
only), crop the rows (no inverse DCT outside) and stop after the region's last row (nothing below is read). Python
has no binding for that, so `jpeg_region.c` is compiled against the system's libjpeg on first use (a fraction of
a second) and called through ctypes. The pixels are the same as OpenCV's decode of the whole photo (both are
libjpeg-turbo's accurate integer IDCT; tests/test_jpeg_region.py compares them); where there is no compiler,
no libjpeg, a libjpeg whose pixels differ from OpenCV's (checked once per process), or a file it gives up on,
`region_grey` returns None and the caller decodes with OpenCV as before.
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
from functools import cache
from pathlib import Path

import cv2
import numpy as np

from .crops import reduced_flag
from .settings import JPEG_REGION_BUILD_DIR, jpeg_region_enabled

SOURCE = Path(__file__).with_name("jpeg_region.c")


def _compiled(source: Path, build_dir: Path) -> Path | None:
    """The shared library of `source` (named by its hash, so an edit rebuilds it), compiled now if missing; None
    where it cannot be. Written under a temporary name and renamed, so processes building at once never load half
    a file."""
    text = source.read_bytes()
    lib = build_dir / f"jpeg-region-{hashlib.sha256(text).hexdigest()[:12]}.so"
    if lib.exists():
        return lib
    tmp = lib.with_name(f"{lib.name}.{os.getpid()}.tmp")
    try:
        build_dir.mkdir(parents=True, exist_ok=True)
        done = subprocess.run([os.environ.get("CC", "cc"), "-O2", "-shared", "-fPIC", str(source), "-o", str(tmp),
                               "-ljpeg"], capture_output=True, timeout=120)
        if done.returncode != 0 or not tmp.exists():
            return None
        os.replace(tmp, lib)
        return lib
    except (OSError, subprocess.SubprocessError):
        return None
    finally:
        if tmp.exists():
            tmp.unlink()


@cache
def loaded():
    """The C function as built and loaded, or None where it cannot be built or loaded (no compiler, no libjpeg
    headers, or a libjpeg without libjpeg-turbo's crop and skip calls)."""
    lib = _compiled(SOURCE, JPEG_REGION_BUILD_DIR)
    if lib is None:
        return None
    try:
        f = ctypes.CDLL(str(lib)).emodet_region_grey
    except OSError:
        return None
    f.argtypes = [ctypes.c_char_p, ctypes.c_ulong] + [ctypes.c_int] * 5 + [ctypes.c_void_p, ctypes.c_int, ctypes.c_int]
    f.restype = ctypes.c_int
    return f


@cache
def _function():
    """The C function where it is enabled, loads and agrees with OpenCV; else None (OpenCV decodes, as before)."""
    if not jpeg_region_enabled():
        return None
    f = loaded()
    return f if f is not None and agrees_with_opencv(f) else None


def agrees_with_opencv(f) -> bool:
    """Whether `f` decodes a test photo as OpenCV does, at every DCT scale, whole and in part. The system's libjpeg
    may not be libjpeg-turbo (IJG's libjpeg 9 scales with other inverse DCTs): the converter's crops must not depend
    on which library a machine has, so a decoder that differs is not used."""
    rng = np.random.default_rng(0)
    photo = cv2.GaussianBlur(rng.integers(0, 256, (75, 101, 3), dtype=np.uint8), (5, 5), 0)
    data = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()
    for factor in (1, 2, 4, 8):
        whole = cv2.imdecode(np.frombuffer(data, np.uint8), reduced_flag(factor))
        h, w = whole.shape
        for x1, y1, x2, y2 in ((0, 0, w, h), (w // 3, h // 3, w // 3 + max(w // 4, 1), h // 3 + max(h // 4, 1))):
            out = _decoded(f, data, factor, (h, w), (x1, y1, x2, y2))
            if out is None or not np.array_equal(out[y1:y2, x1:x2], whole[y1:y2, x1:x2]):
                return False
    return True


def _decoded(f, data: bytes, factor: int, shape: tuple[int, int], region: tuple[int, int, int, int]
             ) -> np.ndarray | None:
    """What the C function `f` decodes of `region` (x1, y1, x2, y2) into a zeroed `shape` image, or None where
    libjpeg gives up or the scaled size is not `shape`."""
    height, width = shape
    x1, y1, x2, y2 = region
    out = np.zeros((height, width), np.uint8)
    return out if f(data, len(data), factor, y1, y2, x1, x2, out.ctypes.data, height, width) == 0 else None


def region_grey(data: bytes, factor: int, shape: tuple[int, int], region: tuple[int, int, int, int]
                ) -> np.ndarray | None:
    """The grey image of JPEG `data` at 1/`factor`, `shape` (height, width) as the header predicts it, holding the
    decoded pixels inside `region` (x1, y1, x2, y2 at that scale; a little more, to whole JPEG blocks, left and
    right) and zeros elsewhere; None where the decoder is missing or libjpeg gives up (the caller then asks
    OpenCV, whose verdict on a bad file stands)."""
    f = _function()
    return None if f is None else _decoded(f, data, factor, shape, region)
