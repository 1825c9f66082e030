from __future__ import annotations

import csv
from pathlib import Path

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from converters import affectnet as an
from converters.errors import EmoDetError
from converters.records import ReadResult

LMS = ";".join(f"{20 + i % 60}.5;{30 + i // 2}.25" for i in range(68))


def test_real_sample_reads_all_faces_with_68_landmarks(real_affectnet):
    result = an.read_affectnet(real_affectnet / "training.csv")
    assert len(result.records) == 9  # 10 rows, one labelled 10 (no-face)
    assert [r.reason for r in result.rejects] == [an.R_NOT_EXPR]
    assert result.rejects[0].row == 7 and "10 no-face" in result.rejects[0].detail
    assert not result.fixes
    for r in result.records:
        assert r.landmarks.shape == (68, 2)
        w, h = r.image_size
        x, y, bw, bh = r.box
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h
    first = result.records[0]
    assert first.box == (71.0, 71.0, 475.0, 475.0) and first.expression == 1
    assert first.valence == pytest.approx(0.474083)


def test_header_less_copy_reads_the_same(real_affectnet, tmp_path):
    text = (real_affectnet / "training.csv").read_text()
    headless = tmp_path / "training.csv"
    headless.write_text(text.split("\n", 1)[1])
    a = an.read_affectnet(real_affectnet / "training.csv")
    b = an.read_affectnet(headless, real_affectnet / an.IMAGES_DIRNAME)
    assert [(r.image, r.box, r.expression) for r in a.records] == [(r.image, r.box, r.expression) for r in b.records]
    assert [r.row for r in b.records] == [r.row - 1 for r in a.records]


@pytest.fixture()
def images(tmp_path) -> Path:
    root = tmp_path / an.IMAGES_DIRNAME / "1"
    root.mkdir(parents=True)
    cv2.imwrite(str(root / "ok.jpg"), np.full((100, 120, 3), 128, np.uint8))
    (root / "empty.jpg").write_bytes(b"")
    (root / "text.jpg").write_text("not an image")
    return tmp_path


def _read(images: Path, row: list[str], n_classes: int = 7) -> ReadResult:
    path = images / "training.csv"
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(an.HEADER)
        w.writerow(row)
    return an.read_affectnet(path, n_classes=n_classes)


def row(path="1/ok.jpg", box=("10", "10", "50", "50"), lms=LMS, expr="1", va=("0.5", "0.2")):
    return [path, *box, lms, expr, *va]


@pytest.mark.parametrize("bad_row, reason", [
    (row(path="1/missing.jpg"), an.R_MISSING),
    (row(path="1/empty.jpg"), an.R_EMPTY),
    (row(path="1/text.jpg"), an.R_UNDECODABLE),
    (row(box=("a", "10", "50", "50")), an.R_BOX_TEXT),
    (row(box=("-3", "10", "50", "50")), an.R_BOX_NEG),
    (row(box=("10", "10", "0", "50")), an.R_BOX_NEG),
    (row(box=("100", "10", "50", "50")), an.R_BOX_OUT),  # 40 % inside
    (row(expr="8"), an.R_NOT_EXPR),
    (row(expr="9"), an.R_NOT_EXPR),
    (row(expr="10"), an.R_NOT_EXPR),
    (row(expr="7"), an.R_CONTEMPT),
    (row(expr="x"), an.R_EXPR_TEXT),
    (row(expr="11"), an.R_EXPR_TEXT),
    (row(lms="1;2;3"), an.R_LANDMARKS),
    (row(va=("high", "0")), an.R_VA),
    (row()[:5], an.R_COLUMNS),
])
def test_malformed_rows_are_rejected_with_their_reason(images, bad_row, reason):
    result = _read(images, bad_row)
    assert result.records == []
    assert [(r.row, r.reason) for r in result.rejects] == [(2, reason)]
    assert str(images / "training.csv") in result.rejects[0].line()


def test_contempt_is_kept_in_8_class_mode(images):
    assert [r.expression for r in _read(images, row(expr="7"), n_classes=8).records] == [7]


def test_box_half_inside_is_clipped_and_noted(images):
    result = _read(images, row(box=("90", "10", "50", "50")))  # 30 of 50 px wide inside a 120 px image
    assert result.records[0].box == (90.0, 10.0, 30.0, 50.0)
    assert [f.reason for f in result.fixes] == [an.FIX_CLIPPED]


def test_duplicate_row_is_reported(images):
    path = images / "training.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerows([an.HEADER, row(), row(expr="2")])
    result = an.read_affectnet(path)
    assert len(result.records) == 1
    assert [(r.row, r.reason) for r in result.rejects] == [(3, an.R_DUPLICATE)]
    assert "row 2" in result.rejects[0].detail


def test_not_applicable_valence_becomes_none(images):
    r = _read(images, row(va=("-2", "-2"))).records[0]
    assert r.valence is None and r.arousal is None


def test_missing_csv_is_a_project_error(tmp_path):
    with pytest.raises(EmoDetError, match="cannot read"):
        an.read_affectnet(tmp_path / "nope.csv")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600))
def test_random_bytes_never_raise_anything_but_our_error(images, data):
    path = images / "fuzz.csv"
    path.write_bytes(data)
    try:
        result = an.read_affectnet(path)
    except EmoDetError:
        return
    assert all(r.reason for r in result.rejects)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fields=st.lists(st.text(alphabet="0123456789.;-ex ,1/ok.jpg\"\n", max_size=30), min_size=0, max_size=12))
def test_random_fields_never_raise_anything_but_our_error(images, fields):
    path = images / "fuzz.csv"
    with path.open("w", newline="") as f:
        csv.writer(f).writerow(fields)
    try:
        result = an.read_affectnet(path)
    except EmoDetError:
        return
    for r in result.records:
        assert r.box[2] > 0 and r.box[3] > 0
