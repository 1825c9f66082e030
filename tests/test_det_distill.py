"""Distillation targets in the detector's class loss (scripts/det_distill.py)."""
from __future__ import annotations

from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest
import torch

from converters.convert import convert_affectnet
from converters.errors import EmoDetError
from converters.pipeline import ConvertOptions
from converters.records import FaceRecord
from converters.scenes import compose_split
from scripts import det_distill


def test_encoded_classes_round_trip_exactly_in_float32():
    cls = np.array([[0], [6], [3], [5]], np.float32)
    rows = np.array([-1, 0, 28557, 2_000_000])  # beyond any FER2013 split, still exact below 2**24 / 8
    plain, got = det_distill.decoded(torch.from_numpy(det_distill.encoded(cls, rows)))
    assert plain.flatten().tolist() == [0, 6, 3, 5] and got.flatten().tolist() == rows.tolist()


def _assign(assigner, labels):
    """The task-aligned assigner on two images: image 0 has two faces, image 1 one (and one padding row)."""
    torch.manual_seed(0)
    anchors = torch.stack(torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="xy"), -1).view(-1, 2) * 8 + 4
    boxes = torch.tensor([[[4.0, 4, 28, 28], [36, 36, 60, 60]], [[10, 30, 40, 60], [0, 0, 0, 0]]])
    mask = torch.tensor([[[1.0], [1.0]], [[1.0], [0.0]]])
    pred_boxes = boxes[:, :1].expand(-1, 64, -1) + torch.randn(2, 64, 4)
    scores = torch.rand(2, 64, 7)
    return assigner(scores, pred_boxes, anchors, labels, boxes, mask)


def test_soft_assigner_keeps_assignment_and_weights_and_spreads_the_class():
    from ultralytics.utils.tal import TaskAlignedAssigner
    inner = TaskAlignedAssigner(topk=4, num_classes=7, alpha=0.5, beta=6.0)
    plain_labels = torch.tensor([[[1.0], [5.0]], [[2.0], [0.0]]])
    soft = torch.softmax(torch.randn(10, 7), 1)
    rows = np.array([[3, -1], [9, -1]])  # the second face of image 0 has no soft target; padding encodes as 0
    coded = torch.from_numpy(det_distill.encoded(plain_labels.view(-1, 1).numpy(), rows.reshape(-1)).reshape(2, 2, 1))
    plain = _assign(inner, plain_labels)
    wrapped = det_distill.SoftTargetAssigner(inner, soft)
    out = _assign(wrapped, coded)
    for k in (1, 3, 4):  # boxes, foreground mask and assigned face are those of the plain labels
        assert torch.equal(out[k], plain[k])
    weight = plain[2].sum(-1)
    assert torch.allclose(out[2].sum(-1), weight)  # each anchor keeps its alignment weight
    fg, face = plain[3].bool(), plain[4]
    assert fg[0].any() and fg[1].any()
    for b, expect in ((0, {0: soft[3], 1: torch.nn.functional.one_hot(torch.tensor(5), 7).float()}),
                      (1, {0: soft[9]})):
        for a in torch.nonzero(fg[b]).flatten().tolist():
            assert torch.allclose(out[2][b, a], expect[int(face[b, a])] * weight[b, a], atol=1e-6)
    assert wrapped.faces == 2  # padding rows do not count


def _records(n):
    rng = np.random.default_rng(1)
    return [FaceRecord(image=Path("fer.csv"), box=(0, 0, 48, 48), expression=i % 7, source="fer.csv", row=100 + i,
                       pixels=rng.integers(0, 255, (48, 48)).astype(np.uint8)) for i in range(n)]


@pytest.fixture(scope="module")
def tiny_scenes(tmp_path_factory):
    """Train scenes from 24 synthetic 'FER2013' rows, converted to YOLO, and a FER2013 table listing 20 of them."""
    root = tmp_path_factory.mktemp("soft")
    compose_split(_records(24), "train", root / "scenes", 6, seed=2, workers=1, progress=False)
    compose_split(_records(24), "val", root / "scenes", 2, seed=2, workers=1, progress=False)
    convert_affectnet(root / "scenes", ["training", "validation"], root / "sets",
                      ConvertOptions(formats=("yolo",), workers=1, progress=False))
    with h5py.File(root / "fer2013.h5", "w") as h5:  # table rows in reverse order, rows 100-103 missing
        h5["Training_id"] = np.array([f"f{r:05d}" for r in range(123, 103, -1)], dtype="S")
    return root


def test_scene_soft_rows_follow_each_label_to_its_fer2013_face(tiny_scenes):
    import csv
    yolo_train = tiny_scenes / "sets" / "yolo" / "train"
    index = det_distill.fer_rows_to_table_index(tiny_scenes / "fer2013.h5")
    rows = det_distill.scene_soft_rows(tiny_scenes / "scenes", yolo_train, index)
    sources = list(csv.DictReader((tiny_scenes / "scenes" / "sources_train.csv").open()))
    assert sum(map(len, rows.values())) == len(sources) == sum(
        len(p.read_text().splitlines()) for p in yolo_train.glob("*.txt"))
    want = [123 - int(s["fer2013_row"]) if int(s["fer2013_row"]) >= 104 else -1 for s in sources]
    got = [r for image in sorted(rows) for r in rows[image]]  # images are named in CSV order
    assert got == want and -1 in got
    # a label file that disagrees with the sources is refused in one line, naming the file
    label = min(yolo_train.glob("*.txt"))
    keep = label.read_text()
    label.write_text("6" + keep[1:] if keep[0] != "6" else "5" + keep[1:])
    try:
        with pytest.raises(EmoDetError, match=label.name):
            det_distill.scene_soft_rows(tiny_scenes / "scenes", yolo_train, index)
    finally:
        label.write_text(keep)


def test_a_tiny_detector_training_uses_the_soft_targets(tiny_scenes, tmp_path):
    from scripts import ultra
    ultra.ultralytics(tmp_path / "config")
    yolo = tiny_scenes / "sets" / "yolo"
    index = det_distill.fer_rows_to_table_index(tiny_scenes / "fer2013.h5")
    rows = det_distill.scene_soft_rows(tiny_scenes / "scenes", yolo / "train", index)
    trainer = det_distill.soft_trainer(rows, np.full((20, 7), 1 / 7, np.float32))
    seen = []
    orig = trainer._check_soft
    trainer._check_soft = staticmethod(lambda t: (seen.append(t.model.criterion.assigner.faces), orig(t)))
    best = ultra.train_detector(yolo / "data.yaml", "v8n", epochs=1, imgsz=128, batch=4, workers=0,
                                project=tmp_path / "runs", name="det", trainer=trainer, bf16=False)
    assert best.exists() and seen and seen[0] > 0


def test_teacher_soft_rows_are_the_hybrids_reading_of_each_face(tiny_scenes):
    """hard 0: each face's row is what the hybrid detector's classifier says of that box (scripts.two_stage, the
    ground-truth boxes as its proposals); hard 1: the face's own label; rows follow each image's label order."""
    from converters.settings import DEFAULT_CLASSIFIER
    from converters.yolo_format import read_yolo_rows
    from scripts.two_stage import TwoStageDetector
    if not DEFAULT_CLASSIFIER.exists():
        pytest.skip(f"{DEFAULT_CLASSIFIER}: not in this checkout")
    images = sorted((tiny_scenes / "sets" / "yolo" / "train").glob("*.jpg"))
    rows, table = det_distill.teacher_soft_rows(images, DEFAULT_CLASSIFIER, 0.0)
    labels = {str(p.resolve()): read_yolo_rows(p.with_suffix(".txt")) for p in images}
    assert sorted(rows) == sorted(labels) and len(table) == sum(map(len, labels.values()))
    assert np.allclose(table.sum(1), 1, atol=1e-5)
    for image in images[:3]:
        photo = cv2.imread(str(image))
        h, w = photo.shape[:2]
        lab = labels[str(image.resolve())]
        boxes = np.c_[(lab[:, 1] - lab[:, 3] / 2) * w, (lab[:, 2] - lab[:, 4] / 2) * h, lab[:, 3] * w, lab[:, 4] * h]
        hybrid = TwoStageDetector(DEFAULT_CLASSIFIER, threads=1, faces=lambda im: (boxes, np.ones(len(boxes))))
        _, probs = hybrid.with_scores(photo)
        assert np.allclose(table[rows[str(image.resolve())]], probs, atol=1e-5)
    rows1, hard = det_distill.teacher_soft_rows(images, DEFAULT_CLASSIFIER, 1.0)
    want = np.concatenate([labels[k][:, 0] for k in sorted(rows1, key=lambda k: rows1[k][0])]).astype(int)
    assert np.array_equal(hard.argmax(1), want) and np.array_equal(hard.max(1), np.ones(len(hard)))
    # peak: the surest class's target is 1 (as a one-hot label's), the others in the same proportions
    _, half = det_distill.teacher_soft_rows(images, DEFAULT_CLASSIFIER, 0.5)
    _, peaked = det_distill.teacher_soft_rows(images, DEFAULT_CLASSIFIER, 0.5, peak=True)
    assert np.allclose(peaked.max(1), 1) and np.allclose(peaked * half.max(1, keepdims=True), half, atol=1e-6)


def test_a_distill_recipe_names_its_teacher_and_faces(tmp_path):
    from scripts.train_recipe import teacher_trainer
    listed = tmp_path / "train.txt"
    listed.write_text("")
    with pytest.raises(EmoDetError, match="distill"):
        teacher_trainer({"distill": {"teacher": "weights/faces-vggc.onnx"}, "train": [{"path": "data/x"}]}, listed)
