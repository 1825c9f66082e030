from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import cv2
import numpy as np

from converters.affectnet import IMAGES_DIRNAME, read_affectnet
from converters.records import FaceRecord
from converters.scenes import compose_scene, compose_split


def _records(n, offset=0, value=None):
    rng = np.random.default_rng(offset)
    return [FaceRecord(image=Path("fer.csv"), box=(0, 0, 48, 48), expression=i % 7, source="fer.csv", row=offset + i,
                       pixels=(np.full((48, 48), value, np.uint8) if value is not None
                               else rng.integers(0, 255, (48, 48)).astype(np.uint8))) for i in range(n)]


def _digest(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_same_seed_same_scenes(tmp_path):
    recs = _records(30)
    compose_split(recs, "train", tmp_path / "a", 4, seed=5, workers=1, progress=False)
    compose_split(recs, "train", tmp_path / "b", 4, seed=5, workers=2, progress=False)
    compose_split(recs, "train", tmp_path / "c", 4, seed=6, workers=1, progress=False)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_boxes_lie_inside_and_match_the_pasted_face():
    rng = np.random.default_rng(3)
    white = [np.full((48, 48), 255, np.uint8)] * 4
    texture = [np.zeros((48, 48), np.uint8)]
    img, boxes = compose_scene(white, texture, rng)
    h, w = img.shape
    placed = [b for b in boxes if b is not None]
    assert placed
    for x, y, s, s2 in placed:
        assert s == s2 and 0 <= x and 0 <= y and x + s <= w and y + s <= h
        centre = img[y + s // 2 - 2:y + s // 2 + 3, x + s // 2 - 2:x + s // 2 + 3]
        assert centre.mean() > 180  # the face (brightened at most 20 %, shifted at most 20) fills the box centre
        # the feathered mask has faded out at the square's corners
        assert abs(float(img[y, x]) - float(img[y + s // 2, x + s // 2])) > 20 or s < 8


def test_splits_never_share_a_face_and_the_converter_reads_the_scenes(tmp_path):
    compose_split(_records(40, 0), "train", tmp_path, 6, workers=1, progress=False)
    compose_split(_records(20, 1000), "val", tmp_path, 3, workers=1, progress=False)
    rows = {s: {r["fer2013_row"] for r in csv.DictReader((tmp_path / f"sources_{s}.csv").open())}
            for s in ("train", "val")}
    assert rows["train"] and rows["val"] and rows["train"].isdisjoint(rows["val"])
    result = read_affectnet(tmp_path / "training.csv")
    placed = len((tmp_path / "sources_train.csv").read_text().splitlines()) - 1
    assert not result.rejects and len(result.records) == placed
    for r in result.records:
        w, h = r.image_size
        x, y, bw, bh = r.box
        assert x + bw <= w and y + bh <= h and r.landmarks is None and r.valence is None
    assert (tmp_path / IMAGES_DIRNAME / "val" / "000000.jpg").exists()
    assert cv2.imread(str(tmp_path / IMAGES_DIRNAME / "train" / "000000.jpg")) is not None


def test_a_crowded_scene_skips_faces_that_find_no_free_spot():
    # 6 faces of 150-160 px cannot all fit into a 320 px scene without overlap: the rest are skipped, not overlapped
    rng = np.random.default_rng(0)
    faces = [np.full((48, 48), 200, np.uint8)] * 6
    img, boxes = compose_scene(faces, [np.zeros((48, 48), np.uint8)], rng, size_range=(320, 320),
                               face_range=(150, 160))
    placed = [b for b in boxes if b is not None]
    assert len(boxes) == 6 and 1 <= len(placed) < 6
    for i, (x, y, s, _) in enumerate(placed):
        for bx, by, bs, _ in placed[i + 1:]:
            assert x + s <= bx or bx + bs <= x or y + s <= by or by + bs <= y
