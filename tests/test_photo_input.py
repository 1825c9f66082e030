"""Grey and softened detector input: the pure image functions and the training loader that applies them."""
from __future__ import annotations

import random

import numpy as np

from converters.crops import grey_bgr, softened
from scripts.ultra import photo_input_loader


def _checkerboard(side: int, cell: int = 2) -> np.ndarray:
    y, x = np.indices((side, side))
    board = (((x // cell) + (y // cell)) % 2 * 255).astype(np.uint8)
    return np.dstack([board, np.zeros_like(board), 255 - board])  # colour: blue/red cells


def _detail(image: np.ndarray) -> float:
    """The largest per-channel spread of pixel values: ~127 on a black/white checkerboard, 0 on a flat image."""
    return float(image.astype(float).std(axis=(0, 1)).max())


def test_grey_bgr_is_opencvs_grey_in_three_equal_channels():
    image = _checkerboard(16)
    out = grey_bgr(image)
    assert out.shape == image.shape and out.dtype == np.uint8
    assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    # BGR (255, 0, 0) -> 0.114 * 255 = 29; (0, 0, 255) -> 0.299 * 255 = 76
    assert {int(v) for v in np.unique(out)} == {29, 76}
    assert grey_bgr(out[..., 0]).shape == image.shape  # a single-channel image too


def test_softened_keeps_the_size_and_removes_detail_finer_than_its_side():
    image = _checkerboard(320)  # 2 px cells: all detail above what a 100 px source could hold
    out = softened(image, 100)
    assert out.shape == image.shape
    assert _detail(image) > 100 and _detail(out) < 10  # the cells average away to flat
    assert np.array_equal(softened(image, 320), image) and np.array_equal(softened(image, 640), image)
    coarse = _checkerboard(320, cell=64)  # detail coarser than the new side survives
    assert np.abs(softened(coarse, 100).astype(int) - coarse).mean() < 10


def test_the_training_loader_greys_always_and_softens_only_when_augmenting():
    image = _checkerboard(64)
    calls = []

    def load(i, *a, **k):
        calls.append(i)
        return image.copy(), (64, 64), (64, 64)

    for augment in (True, False):
        loader = photo_input_loader(load, grey=True, soften=1.0, sides=(16, 16), augment=augment,
                                    rng=random.Random(0))
        out, hw0, hw = loader(3)
        assert (hw0, hw) == ((64, 64), (64, 64)) and (out[..., 0] == out[..., 2]).all()
        assert (_detail(out) < 10) == augment  # softened in training only
    colour = photo_input_loader(load, grey=False, soften=0.0, sides=(16, 16), augment=True)(0)[0]
    assert np.array_equal(colour, image) and calls == [3, 3, 0]
    rng = random.Random(1)  # soften is a probability per image
    half = photo_input_loader(load, grey=False, soften=0.5, sides=(16, 16), augment=True, rng=rng)
    n_soft = sum(_detail(half(0)[0]) < 10 for _ in range(200))
    assert 70 < n_soft < 130
