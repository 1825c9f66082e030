"""The converter's partial JPEG decoder (converters/jpeg_region.py) against OpenCV's decode of the whole photo."""
from __future__ import annotations

import ctypes
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from converters import jpeg_region
from converters.convert import convert_affectnet
from converters.pipeline import ConvertOptions

# skipped where it cannot be built or loaded; where it loads but decodes otherwise than OpenCV, these tests fail
if jpeg_region.loaded() is None:
    pytest.skip("the partial JPEG decoder cannot be built here (no C compiler, no libjpeg headers, or a libjpeg "
                "without libjpeg-turbo's partial decoding): the converter decodes with OpenCV instead",
                allow_module_level=True)

REDUCED = {1: cv2.IMREAD_GRAYSCALE, 2: cv2.IMREAD_REDUCED_GRAYSCALE_2, 4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
           8: cv2.IMREAD_REDUCED_GRAYSCALE_8}


def _photo(height: int, width: int, seed: int) -> np.ndarray:
    """A colour photo with detail at every scale (smooth gradients, edges, noise): what makes IDCTs differ."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([(x * 255 // max(width - 1, 1)), (y * 255 // max(height - 1, 1)), (x + y) % 256], -1)
    img = (base + rng.normal(0, 25, (height, width, 3))).clip(0, 255).astype(np.uint8)
    cv2.circle(img, (width // 2, height // 2), min(height, width) // 3, (20, 200, 90), -1)
    return img


def _encodings(img: np.ndarray, tmp_path: Path) -> dict[str, bytes]:
    """The same photo as the JPEG kinds met in the wild: chroma 4:2:0, 4:2:2 and 4:4:4, progressive, restart
    markers, a grey JPEG."""
    out = {}
    for name, sub in (("420", 2), ("422", 1), ("444", 0)):
        p = tmp_path / f"{name}.jpg"
        Image.fromarray(img[:, :, ::-1]).save(p, quality=90, subsampling=sub)
        out[name] = p.read_bytes()
    out["progressive"] = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1])[1].tobytes()
    out["restarts"] = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_RST_INTERVAL, 3])[1].tobytes()
    out["grey"] = cv2.imencode(".jpg", cv2.cvtColor(img, cv2.COLOR_BGR2GRAY))[1].tobytes()
    return out


@pytest.mark.parametrize("height,width", [(301, 437), (64, 64), (517, 203)])
def test_region_pixels_equal_opencvs_whole_decode(height, width, tmp_path):
    img = _photo(height, width, seed=height)
    for kind, data in _encodings(img, tmp_path).items():
        for factor in (1, 2, 4, 8):
            whole = cv2.imdecode(np.frombuffer(data, np.uint8), REDUCED[factor] | cv2.IMREAD_IGNORE_ORIENTATION)
            h, w = whole.shape
            for x1, y1, x2, y2 in ((0, 0, w, h), (w // 3, h // 4, w // 3 + max(w // 5, 1), h // 4 + max(h // 3, 1)),
                                   (w - 1, h - 1, w, h), (1, 0, 2, 1)):
                part = jpeg_region.region_grey(data, factor, (h, w), (x1, y1, x2, y2))
                where = f"{kind} {height}x{width} at 1/{factor}, region {(x1, y1, x2, y2)}"
                assert part is not None, where
                assert part.shape == whole.shape, where
                assert np.array_equal(part[y1:y2, x1:x2], whole[y1:y2, x1:x2]), where
                # nothing decoded outside the region's rows: they stay zero
                assert not part[:y1].any() and not part[y2:].any(), where


def test_what_it_cannot_decode_goes_back_to_the_caller(tmp_path):
    data = cv2.imencode(".jpg", _photo(80, 120, 1))[1].tobytes()
    assert jpeg_region.region_grey(data, 2, (41, 60), (0, 0, 60, 41)) is None  # not the size the header gives
    assert jpeg_region.region_grey(b"\xff\xd8" + b"\x00" * 200, 1, (80, 120), (0, 0, 10, 10)) is None
    cmyk = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (64, 48), (10, 200, 30, 5)).save(cmyk)
    assert jpeg_region.region_grey(cmyk.read_bytes(), 1, (48, 64), (0, 0, 64, 48)) is None or \
        np.array_equal(jpeg_region.region_grey(cmyk.read_bytes(), 1, (48, 64), (0, 0, 64, 48)),
                       cv2.imread(str(cmyk), cv2.IMREAD_GRAYSCALE))


def test_a_decoder_that_differs_from_opencv_is_not_used():
    assert jpeg_region.agrees_with_opencv(jpeg_region.loaded())

    def nothing_written(data, size, factor, y1, y2, x1, x2, out, height, width):
        return 0

    def one_level_off(data, size, factor, y1, y2, x1, x2, out, height, width):  # as another IDCT might round
        rc = jpeg_region.loaded()(data, size, factor, y1, y2, x1, x2, out, height, width)
        view = np.ctypeslib.as_array(ctypes.cast(out, ctypes.POINTER(ctypes.c_uint8)), (height, width))
        view[y1, x1] ^= 1
        return rc

    assert not jpeg_region.agrees_with_opencv(nothing_written)
    assert not jpeg_region.agrees_with_opencv(one_level_off)


def test_the_library_is_built_once_per_source(tmp_path):
    first = jpeg_region._compiled(jpeg_region.SOURCE, tmp_path)
    assert first is not None and first.exists()
    stamp = first.stat().st_mtime_ns
    assert jpeg_region._compiled(jpeg_region.SOURCE, tmp_path) == first and first.stat().st_mtime_ns == stamp
    broken = tmp_path / "broken.c"
    broken.write_text("int f( {")
    assert jpeg_region._compiled(broken, tmp_path / "b") is None
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["b", first.name, "broken.c"])  # no temporary left


def _tree(root: Path) -> dict[str, str]:
    """Each file's hash, but for those that name the output folder (lists, .data, data.yaml, the manifest)."""
    files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
    return {k: hashlib.sha256(v).hexdigest() for k, v in files.items() if str(root).encode() not in v}


def test_the_converter_writes_the_same_files_either_way(sample_dir, tmp_path, monkeypatch):
    opts = ConvertOptions(sizes=(48, 96), formats=("crops", "darknet", "table", "yolo"), workers=1, progress=False)
    decoded = []
    region_grey = jpeg_region.region_grey
    monkeypatch.setattr(jpeg_region, "region_grey", lambda *a: decoded.append(region_grey(*a)) or decoded[-1])
    trees = {}
    for mode in ("1", "0"):
        monkeypatch.setenv("EMODET_JPEG_REGION", mode)
        jpeg_region._function.cache_clear()
        convert_affectnet(sample_dir, ["training"], tmp_path / mode, opts)
        trees[mode] = _tree(tmp_path / mode)
        if mode == "1":  # every photo of the sample went through the partial decoder
            assert len(decoded) >= 40 and all(d is not None for d in decoded)
    jpeg_region._function.cache_clear()
    assert len(trees["1"]) > 100 and sum(k.endswith(".png") for k in trees["1"]) > 50
    assert trees["1"] == trees["0"]
