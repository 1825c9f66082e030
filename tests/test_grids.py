from __future__ import annotations

import hashlib

import cv2
import numpy as np
import pytest

from converters.affectnet import read_affectnet
from converters.errors import EmoDetError
from converters.grids import compose_grid, compose_grids, labelled_photos


def _photo_folder(folder, n=8, side=160):
    """Face photos: dark, with a bright face square at a known place; class i % 7. One extra photo with two faces
    and one with none, which the grids skip."""
    folder.mkdir(parents=True)
    for i in range(n):
        img = np.full((side, side), 30, np.uint8)
        img[20:140, 30:130] = 230  # the face: x 30-130, y 20-140
        cv2.imwrite(str(folder / f"{i}.jpg"), img)
        (folder / f"{i}.txt").write_text(f"{i % 7} 0.5 0.5 0.625 0.75\n")
    cv2.imwrite(str(folder / "two.jpg"), np.zeros((side, side), np.uint8))
    (folder / "two.txt").write_text("1 0.3 0.5 0.2 0.2\n2 0.7 0.5 0.2 0.2\n")
    cv2.imwrite(str(folder / "none.jpg"), np.zeros((side, side), np.uint8))
    (folder / "none.txt").write_text("")
    return folder


def test_each_box_is_the_photos_face_carried_into_its_cell():
    photo = np.full((160, 160), 30, np.float32)
    photo[20:140, 30:130] = 230
    rng = np.random.default_rng(1)
    img, placed = compose_grid([photo] * 40, [(0.5, 0.5, 0.625, 0.75)] * 40, 5, rng, size_range=(320, 320))
    boxes = [b for b in placed if b is not None]
    assert img.shape == (320, 320) and img.dtype == np.uint8
    assert 15 <= len(boxes) <= 25 and len(placed) == 40  # 25 cells, about 15 % of them left empty
    for i, (x, y, w, h) in enumerate(boxes):
        assert 0 <= x and 0 <= y and x + w <= 320 and y + h <= 320
        assert 0.6 * 64 * 0.625 - 1 <= w <= 64 * 0.625 + 1 and abs(h / w - 1.2) < 0.1
        assert img[y + 1:y + h - 1, x + 1:x + w - 1].min() > 200  # the face, nothing else, inside the box
        for bx, by, bw, bh in boxes[i + 1:]:
            assert x + w <= bx or bx + bw <= x or y + h <= by or by + bh <= y


def test_grids_round_trip_through_the_affectnet_reader(tmp_path):
    source = _photo_folder(tmp_path / "photos")
    assert len(labelled_photos(source)) == 8  # the two-face and the empty photo are not grid material
    r = compose_grids(source, tmp_path / "a", 3, (3, 4), seed=2, workers=1, progress=False)
    compose_grids(source, tmp_path / "b", 3, (3, 4), seed=2, workers=2, progress=False)
    digest = lambda root: sorted(hashlib.sha256(p.read_bytes()).hexdigest() for p in root.rglob("*") if p.is_file())
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    result = read_affectnet(tmp_path / "a" / "training.csv")
    assert not result.rejects and len(result.records) == r["faces"] >= 3 * 9 * 0.5
    assert {rec.expression for rec in result.records} <= set(range(7))
    assert len({rec.expression for rec in result.records}) == 7  # every photo's class travels with its face
    for rec in result.records:
        img = cv2.imread(str(rec.image), cv2.IMREAD_GRAYSCALE)
        x, y, w, h = (int(v) for v in rec.box)
        assert img[y + 2:y + h - 2, x + 2:x + w - 2].mean() > 200


def test_a_folder_without_single_face_photos_is_refused_in_one_line(tmp_path):
    (tmp_path / "p").mkdir()
    with pytest.raises(EmoDetError, match="no images with exactly one YOLO face label"):
        compose_grids(tmp_path / "p", tmp_path / "out", 2, (3, 4), workers=1, progress=False)


def test_a_val_split_of_other_photos_lands_in_yolo_val_beside_train(tmp_path):
    from converters.convert import convert_dataset
    from converters.pipeline import ConvertOptions
    from converters.yolo_format import read_yolo_rows
    train, val = _photo_folder(tmp_path / "train-photos"), _photo_folder(tmp_path / "val-photos", n=7)
    t = compose_grids(train, tmp_path / "g", 2, (3, 3), seed=0, workers=1, progress=False)
    v = compose_grids(val, tmp_path / "g", 2, (3, 3), seed=1, workers=1, progress=False, split="val")
    assert (tmp_path / "g" / "training.csv").is_file() and (tmp_path / "g" / "validation.csv").is_file()
    assert {p.parent.name for p in (tmp_path / "g").rglob("*.jpg")} == {"train", "val"}  # neither overwrote the other
    convert_dataset(tmp_path / "g", ["training", "validation"], tmp_path / "c",
                    ConvertOptions(sizes=(48,), formats=("yolo",), workers=1, progress=False))
    for split, r in (("train", t), ("val", v)):
        labels = sorted((tmp_path / "c" / "yolo" / split).glob("*.txt"))
        assert len(labels) == 2 and sum(len(read_yolo_rows(p)) for p in labels) == r["faces"]
