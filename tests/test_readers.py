"""The readers of the data shapes users bring: YOLO/Roboflow exports (class names mapped by name) and folders or
CSVs of labelled face photos (boxes derived, identity-disjoint splits)."""
from __future__ import annotations

import csv

import cv2
import numpy as np
import pytest

from converters.convert import convert_dataset, input_shape, main as convert_main
from converters.errors import EmoDetError
from converters.face_photos import FALLBACK_BOX, FIX_NO_FACE, identity_split, read_face_photos
from converters.labels import CANONICAL_NAMES, canonical_code
from converters.pipeline import ConvertOptions
from converters.yolo_export import R_CLASS, R_LINE, read_yolo_export
from eval.detection_io import read_ground_truth


def _image(path, w=200, h=100, value=90):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((h, w, 3), value, np.uint8))


def _export(root, names, labels: dict[str, str]):
    """A Roboflow-shaped export: data.yaml + train/images/*.jpg + train/labels/*.txt."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data.yaml").write_text(f"train: ../train/images\nval: ../valid/images\nnc: {len(names)}\nnames: {names}\n")
    for stem, text in labels.items():
        _image(root / "train" / "images" / f"{stem}.jpg")
        (root / "train" / "labels" / f"{stem}.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "train" / "labels" / f"{stem}.txt").write_text(text)
    return root


def test_names_map_into_the_canonical_table_by_name_not_index():
    assert [canonical_code(n) for n in ("angry", "Disgust", "fear", "happiness", "NEUTRAL", "sadness", "surprised")] \
        == [6, 5, 4, 1, 0, 2, 3]
    with pytest.raises(KeyError, match="needs --classes 8"):
        canonical_code("contempt", 7)
    assert CANONICAL_NAMES[canonical_code("contempt", 8)] == "contempt"


def test_yolo_export_classes_boxes_and_bad_lines(tmp_path):
    # alphabetical Roboflow order: 0 angry, 1 happy, 2 neutral
    root = _export(tmp_path / "export", ["angry", "happy", "neutral"],
                   {"a": "0 0.5 0.5 0.5 0.5\n2 0.25 0.5 0.1 0.2", "b": "1 0.5 0.5 0.2 0.4\n7 0.5 0.5 0.1 0.1\nx y",
                    "c": ""})
    read = read_yolo_export(root, "train")
    got = [(r.expression, tuple(round(v) for v in r.box)) for r in read.records]
    assert got == [(6, (50, 25, 100, 50)), (0, (40, 40, 20, 20)), (1, (80, 30, 40, 40))]
    assert sorted((r.row, r.reason) for r in read.rejects) == [(2, R_CLASS), (3, R_LINE)]
    assert all(r.source.endswith("b.txt") for r in read.rejects)


def test_yolo_export_with_an_unknown_class_name_is_refused_in_one_line(tmp_path, capsys):
    from converters.errors import run_cli
    root = _export(tmp_path / "export", ["angry", "bored"], {"a": "0 0.5 0.5 0.5 0.5"})
    with pytest.raises(EmoDetError, match=r"data.yaml: class 1: unknown class name 'bored'"):
        read_yolo_export(root, "train")
    assert run_cli(convert_main, ["--input", str(root), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and "'bored'" in err[0]


def test_make_convert_takes_an_export_and_writes_canonical_yolo_labels(tmp_path):
    root = _export(tmp_path / "export", ["angry", "happy", "neutral"],
                   {"a": "0 0.5 0.5 0.5 0.5\n2 0.25 0.5 0.1 0.2", "b": "1 0.5 0.5 0.2 0.4"})
    assert input_shape(root) == "yolo"
    assert convert_main(["--input", str(root), "--out", str(tmp_path / "out"), "--formats", "yolo", "--quiet",
                         "--workers", "1"]) == 0
    gt = read_ground_truth(tmp_path / "out" / "yolo" / "train")
    assert sorted(int(c) for a in gt.values() for c in a[:, 0]) == [0, 1, 6]
    # the round trip keeps the boxes: normalised xyxy of the 'a' image's angry face
    angry = [a for a in gt.values() if 6 in a[:, 0]][0]
    assert angry[angry[:, 0] == 6, 1:].tolist() == [pytest.approx([0.25, 0.25, 0.75, 0.75])]


def _photos(root, rows):
    root.mkdir(parents=True, exist_ok=True)
    for name, *_ in rows:
        _image(root / "images" / name, 120, 120, 100)
    with (root / "labels.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["image", "emotion", "identity"])
        w.writerows(rows)
    return root


def test_face_photos_split_by_identity_and_every_row_is_accounted_for(tmp_path):
    people = [f"person_{i}" for i in range(30)]
    rows = [(f"{p}_{k}.jpg", ["happiness", "neutral", "anger"][k % 3], p) for p in people for k in range(3)]
    rows.append(("odd.jpg", "bored", "someone"))
    root = _photos(tmp_path / "faces", rows)
    assert input_shape(root) == "photos"
    train = read_face_photos(root, "train", val_fraction=0.3, workers=1)
    val = read_face_photos(root, "val", val_fraction=0.3, workers=1)
    ids = {s: {r.image.name.rsplit("_", 1)[0] for r in rr.records} for s, rr in (("train", train), ("val", val))}
    assert ids["train"] and ids["val"] and not ids["train"] & ids["val"]
    assert len(train.records) + len(val.records) == 90
    # the unknown name is rejected on the side its identity falls on, with its row
    rejected = [r for rr in (train, val) for r in rr.rejects]
    assert [(r.row, "bored" in r.detail) for r in rejected] == [(92, True)]
    # plain grey photos hold no face: the median framing, reported as a fix for each
    assert len(train.fixes) == len(train.records) and {f.reason for f in train.fixes} == {FIX_NO_FACE}
    x, y, w, h = train.records[0].box
    assert (x, y, w, h) == pytest.approx(tuple(v * 120 for v in FALLBACK_BOX))


def test_identity_split_is_stable_and_near_its_fraction():
    sides = [identity_split(f"id{i}", 0.2) for i in range(2000)]
    assert sides == [identity_split(f"id{i}", 0.2) for i in range(2000)]
    assert 0.17 < sides.count("val") / 2000 < 0.23


def test_face_photos_of_class_folders(tmp_path):
    for name, cls in (("a.jpg", "Happy"), ("b.jpg", "sad"), ("c.jpg", "sad")):
        _image(tmp_path / "folders" / cls / name, 64, 64)
    read = read_face_photos(tmp_path / "folders", None, workers=1)
    assert sorted(r.expression for r in read.records) == [1, 2, 2]


def test_face_photos_convert_into_crops_and_a_yolo_set(tmp_path):
    rows = [(f"p{i}_1.jpg", "sadness", f"p{i}") for i in range(12)]
    root = _photos(tmp_path / "faces", rows)
    results = convert_dataset(root, ["train", "val"], tmp_path / "out",
                              ConvertOptions(sizes=(48,), formats=("crops", "yolo"), workers=1, progress=False))
    faces = sum(r.faces for r, _, _ in results)
    assert faces == 12 and len(list((tmp_path / "out" / "crops" / "48").rglob("*.png"))) == 12


def test_every_reader_takes_the_same_photos_whatever_their_suffix_case(tmp_path):
    """One list of image suffixes (converters.io): a folder of .JPG, .webp and .png photos (and a .gif and a note
    beside them) is read alike by the face-photo reader, the YOLO export reader, predict, the evaluation's image
    sizes and a training recipe's entries."""
    from converters.io import image_beside, images_in
    from eval.detection_io import image_sizes
    from scripts import predict, train_recipe
    names = ("a.JPG", "b.webp", "c.png")
    for name in names:
        _image(tmp_path / "folders" / "happy" / name, 64, 48)
    (tmp_path / "folders" / "happy" / "d.gif").write_bytes(b"GIF89a")
    (tmp_path / "folders" / "happy" / "notes.txt").write_text("not a photo")
    folder = tmp_path / "folders" / "happy"
    assert [p.name for p in images_in(folder)] == list(names)
    assert len(read_face_photos(tmp_path / "folders", None, workers=1).records) == 3
    assert [name for name, _, img in predict.frames(folder) if img is not None] == list(names)

    export = tmp_path / "export"
    (export / "train" / "images").mkdir(parents=True)
    (export / "train" / "labels").mkdir(parents=True)
    (export / "data.yaml").write_text("train: ../train/images\nnc: 1\nnames: ['happy']\n")
    for name in names:
        (export / "train" / "images" / name).write_bytes((folder / name).read_bytes())
        (export / "train" / "labels" / f"{name.split('.')[0]}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    assert len(read_yolo_export(export, "train").records) == 3

    yolo = tmp_path / "yolo"
    yolo.mkdir()
    for name in names:
        (yolo / name).write_bytes((folder / name).read_bytes())
        (yolo / f"{name.split('.')[0]}.txt").write_text("0 0.5 0.5 0.5 0.5\n")
    assert image_beside(yolo / "a.txt") == yolo / "a.JPG" and image_beside(yolo / "d.txt") is None
    assert image_sizes(yolo) == {"a": (64, 48), "b": (64, 48), "c": (64, 48)}
    assert len(train_recipe.entry_images({"path": str(yolo)}, __import__("random").Random(0))) == 3
