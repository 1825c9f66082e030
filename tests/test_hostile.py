"""Hostile-but-fair input: each case failed (traceback, silent loss or a file read from outside the dataset) before
its fix; now every input line is converted or reported with its reason, and errors are one line."""
from __future__ import annotations

import shutil

import cv2
import numpy as np
import pytest

from converters.affectnet import (R_COLUMNS, R_LANDMARKS, R_OUTSIDE, R_TRUNCATED, R_UNPARSABLE, HEADER,
                                  read_affectnet)
from converters.convert import convert_affectnet
from converters.errors import EmoDetError, run_cli
from converters.pipeline import ConvertOptions

OPTS = dict(sizes=(48,), formats=("crops", "yolo"), workers=1, progress=False)


@pytest.fixture()
def dataset(sample_dir, tmp_path):
    """A private copy of the synthetic sample (tests edit it)."""
    root = tmp_path / "affectnet"
    shutil.copytree(sample_dir, root)
    return root


def _lines(root):
    return (root / "training.csv").read_text().splitlines()


def _write(root, lines):
    (root / "training.csv").write_text("\n".join(lines) + "\n")


def test_paths_that_leave_the_image_folder_are_bad_rows(dataset, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    cv2.imwrite(str(outside / "x.jpg"), np.zeros((100, 100, 3), np.uint8))
    lines = _lines(dataset)
    tail = lines[1].split(",", 1)[1]
    lines += [f"../../outside/x.jpg,{tail}", f"{outside / 'x.jpg'},{tail}", f"/etc/passwd,{tail}"]
    _write(dataset, lines)
    read = read_affectnet(dataset / "training.csv")
    bad = [r for r in read.rejects if r.reason == R_OUTSIDE]
    assert len(bad) == 3 and not any("outside" in str(r.image) or "passwd" in str(r.image) for r in read.records)


def test_a_stray_quote_costs_one_row_and_a_huge_field_is_a_bad_row(dataset):
    lines = _lines(dataset)[:7]  # header + 6 rows
    lines[4] = '"' + lines[4]
    lines.append(lines[5].replace(",", "," + "x" * 200_000, 1))
    _write(dataset, lines)
    read = read_affectnet(dataset / "training.csv")
    assert len(read.records) == 5  # rows 2, 3, 4, 6, 7 of the file
    assert sorted((r.row, r.reason) for r in read.rejects) == [(5, R_COLUMNS), (8, R_UNPARSABLE)]


def test_a_truncated_jpeg_is_refused_with_its_row(dataset):
    rel = _lines(dataset)[1].split(",")[0]
    image = dataset / "Manually_Annotated_Images" / rel
    data = image.read_bytes()
    image.write_bytes(data[:len(data) // 2])
    read = read_affectnet(dataset / "training.csv")
    truncated = [r for r in read.rejects if r.reason == R_TRUNCATED]
    assert truncated and truncated[0].row == 2 and {r.image for r in truncated} == {str(image)}
    assert not any(r.image == image for r in read.records)


def test_overflowing_landmarks_and_absurd_options_are_refused(dataset):
    lines = _lines(dataset)
    fields = lines[1].split(",")
    marks = fields[HEADER.index("facial_landmarks")].split(";")
    marks[0] = "1e39"
    fields[HEADER.index("facial_landmarks")] = ";".join(marks)
    lines[1] = ",".join(fields)
    _write(dataset, lines)
    read = read_affectnet(dataset / "training.csv")
    assert [(r.row, r.reason) for r in read.rejects] == [(2, R_LANDMARKS)]
    for bad in (dict(box_scale=float("nan")), dict(box_scale=float("inf")), dict(sizes=(100_000,))):
        with pytest.raises(EmoDetError):
            ConvertOptions(**bad)


def test_a_replaced_image_is_not_reused_silently(dataset, tmp_path):
    out = tmp_path / "out"
    convert_affectnet(dataset, ["training"], out, ConvertOptions(**OPTS))
    rel = _lines(dataset)[1].split(",")[0]
    image = dataset / "Manually_Annotated_Images" / rel
    img = cv2.imread(str(image))
    cv2.imwrite(str(image), 255 - img)  # same name, same size, other pixels
    with pytest.raises(EmoDetError, match="other options or input"):
        convert_affectnet(dataset, ["training"], out, ConvertOptions(**OPTS))
    convert_affectnet(dataset, ["training"], out, ConvertOptions(**OPTS), overwrite=True)


def test_os_errors_and_a_closed_pipe_are_one_line(dataset, tmp_path, capsys):
    from converters import convert
    target = tmp_path / "a-file"
    target.write_text("x")
    assert run_cli(convert.main, ["--input", str(dataset), "--out", str(target / "sub"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "a-file" in err[0]

    def closed(_):
        raise BrokenPipeError
    assert run_cli(closed) == 141 and capsys.readouterr().err == ""


def test_a_nan_in_a_prediction_or_label_file_names_its_line(tmp_path):
    from eval.detection_io import read_yolo_file
    (tmp_path / "p.txt").write_text("0 0.5 0.5 0.2 0.2 0.9\n1 0.5 0.5 0.2 0.2 nan\n")
    (tmp_path / "g.txt").write_text("0 nan 0.5 0.2 0.2\n")
    with pytest.raises(EmoDetError, match=r"p.txt:2: not finite"):
        read_yolo_file(tmp_path / "p.txt", True)
    with pytest.raises(EmoDetError, match=r"g.txt:1: not finite"):
        read_yolo_file(tmp_path / "g.txt", False)
