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


def test_contempt_goes_into_the_fer2013_format_table_with_8_classes(tmp_path):
    from converters.synthetic import generate_sample
    generate_sample(tmp_path / "s8", n_train=24, n_val=4, seed=3, n_classes=8, workers=1, progress=False)
    convert_affectnet(tmp_path / "s8", ["training"], tmp_path / "out",
                      ConvertOptions(sizes=(48,), formats=("table",), n_classes=8, workers=1, progress=False))
    codes = [line.split(",")[0] for line in (tmp_path / "out" / "table" / "fer2013.csv").read_text().splitlines()[1:]]
    assert "7" in codes  # contempt, FER2013's missing class, under the next code


def test_a_second_conversion_into_the_same_folder_is_refused_while_one_runs(dataset, tmp_path):
    from converters.io import output_lock
    out = tmp_path / "out"
    with output_lock(out):
        with pytest.raises(EmoDetError, match="another EmoDet run is writing into this folder"):
            convert_affectnet(dataset, ["training"], out, ConvertOptions(**OPTS))
    convert_affectnet(dataset, ["training"], out, ConvertOptions(**OPTS))  # free again


def test_leftovers_of_a_killed_run_are_removed_and_links_leave_no_temp_file(dataset, tmp_path):
    from converters.pipeline import _link_or_write
    out = tmp_path / "out"
    (out / "table").mkdir(parents=True)
    (out / "table" / ".fer2013.h5.4242.tmp").write_bytes(b"half")
    (out / "table" / "fer2013.csv.4242.tmp").write_bytes(b"half")
    convert_affectnet(dataset, ["training"], out, ConvertOptions(**OPTS))
    assert list(out.rglob("*.tmp")) == []
    src = tmp_path / "src.jpg"
    src.write_bytes(b"jpeg")
    _link_or_write(src, None, tmp_path / "dst.jpg")
    _link_or_write(src, None, tmp_path / "dst.jpg")  # dst is already a link of src: rename() does nothing
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".tmp" or p.name.startswith(".")) == []


def test_an_exif_rotated_photo_gets_a_yolo_image_whose_pixels_match_its_label(tmp_path):
    """The YOLO copy of a JPEG with EXIF orientation 6 is written upright as stored, so Ultralytics' own image
    loader sees the face where the label says (a hard link would load rotated by 90 degrees)."""
    from PIL import Image
    from scripts.ultra_env import ultralytics
    ultralytics()  # offline before anything imports it (a plain import would let it look for the network)
    from ultralytics.utils.patches import imread
    root = tmp_path / "affectnet"
    images = root / "Manually_Annotated_Images" / "1"
    images.mkdir(parents=True)
    stored = np.zeros((200, 300, 3), np.uint8)
    stored[40:100, 200:260] = 255  # the "face": x 200-260, y 40-100 in the stored pixel grid
    pil = Image.fromarray(stored)
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    pil.save(images / "r.jpg", exif=exif, quality=95)
    header = ",".join(HEADER)
    (root / "training.csv").write_text(f"{header}\n1/r.jpg,200,40,60,60,,1,0.5,0.1\n")
    convert_affectnet(root, ["training"], tmp_path / "out", ConvertOptions(sizes=(48,), formats=("yolo",), workers=1,
                                                                          progress=False))
    yolo = tmp_path / "out" / "yolo" / "train"
    img = imread(str(next(yolo.glob("*.jpg"))))
    _, cx, cy, w, h = map(float, next(yolo.glob("*.txt")).read_text().split())
    H, W = img.shape[:2]
    x1, y1, x2, y2 = int((cx - w / 2) * W), int((cy - h / 2) * H), int((cx + w / 2) * W), int((cy + h / 2) * H)
    assert (W, H) == (300, 200) and img[y1 + 5:y2 - 5, x1 + 5:x2 - 5].mean() > 200


def test_eval_of_an_empty_folder_is_one_line(tmp_path, capsys):
    from eval import detection
    (tmp_path / "gt").mkdir()
    (tmp_path / "pred").mkdir()
    assert run_cli(detection.main, ["--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]) == 2
    assert "no ground-truth label files" in capsys.readouterr().err


def test_a_text_file_as_a_classifier_is_one_line(tmp_path, capsys):
    from eval import confusion
    from converters.labels import class_names
    from converters.writers import write_h5
    write_h5(tmp_path / "t.h5", {"test": (np.zeros((2, 2304), np.uint8), np.array([0, 1]), ["a", "b"])},
             class_names(7))
    fake = tmp_path / "m.pt"
    fake.write_text("hello")
    assert run_cli(confusion.main, ["--weights", str(fake), "--data", str(tmp_path / "t.h5")]) == 2
    assert "not a PyTorch checkpoint" in capsys.readouterr().err
