"""Contact-sheet captions stay inside their cells."""
from __future__ import annotations

import cv2

from eval.plots import CAPTION_SCALE, contact_sheet, fitted_caption


def _width(text: str) -> int:
    return cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, CAPTION_SCALE, 1)[0][0]


def test_a_short_caption_is_kept_and_a_long_one_keeps_both_ends_within_the_width():
    assert fitted_caption("bus.jpg", 232) == "bus.jpg"
    name = "f15ff5873c0f4216649f7e39970c4841e90d9474fa5e3f4f0b995033.jpg"
    fitted = fitted_caption(name, 232)
    assert _width(name) > 232 >= _width(fitted)
    head, tail = fitted.split("..")
    assert name.startswith(head) and name.endswith(tail) and tail.endswith(".jpg") and len(head) >= len(tail)
    assert _width(fitted_caption(name, 240)) >= _width(fitted)  # no shorter than it has to be
    assert _width(fitted_caption(name, 5)) <= 5 or len(fitted_caption(name, 5)) <= 4


def test_the_sheet_draws_each_caption_inside_its_own_cell():
    import numpy as np
    images = [np.zeros((100, 100, 3), np.uint8)] * 2
    sheet = contact_sheet(images, thumb=120, columns=2, captions=["a" * 80 + ".jpg", ""])
    ink = np.flatnonzero((sheet[120:138] > 100).any(axis=(0, 2)))  # columns with caption text
    assert ink.size and ink.max() < 120  # the first cell's caption ends before the second cell starts
