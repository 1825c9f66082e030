"""Distillation targets for the one-stage detector's class head.

Each face of a FER-scenes train image is a FER2013 Training face (converters/scenes.py writes which one), so the
classifier teachers' soft targets (`scripts/distill.py`, one row per Training face of the FER2013 table) can stand
in for the one-hot class in Ultralytics' class loss, as they do for the torch classifier. Ultralytics carries a
label's class through every augmentation as one float per box; we hide the soft-target row in it
(class + CODE * (row + 1), exact in float32 for any FER2013 size) and decode it in the loss, right around the
task-aligned assigner: the assigner sees the plain class, and its one-hot targets (scaled by the alignment
metric) become the face's soft distribution scaled the same way. Validation data is never encoded, so val
losses and metrics stay those of the hard labels.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from converters.errors import EmoDetError
from converters.progress import tracked
from converters.yolo_format import read_yolo_rows

CODE = 8  # above every class index (7 or 8 classes)


def fer_rows_to_table_index(h5_path: Path, usage: str = "Training") -> dict[int, int]:
    """FER2013 csv row -> index in that split of the converters' HDF5 table (its ids are 'f<row>')."""
    import h5py
    with h5py.File(h5_path, "r") as h5:
        ids = h5[f"{usage}_id"][:]
    return {int(i.decode()[1:]): k for k, i in enumerate(ids)}


def scene_soft_rows(scenes: Path, yolo_train: Path, table_index: dict[int, int]) -> dict[str, np.ndarray]:
    """For every train image of the converted scenes (resolved path), the soft-target row (`table_index`:
    fer_rows_to_table_index) of each of its labels in label order (-1 where the face is not in the table).
    Images are named and their labels ordered by the converter's own grouping; checked against the label files."""
    from converters.affectnet import read_affectnet
    from converters.pipeline import image_tasks
    scenes = Path(scenes)
    records = read_affectnet(scenes / "training.csv").records
    sources = list(csv.DictReader((scenes / "sources_train.csv").open()))
    if len(records) != len(sources):
        raise EmoDetError(f"{scenes}: training.csv has {len(records)} usable faces, sources_train.csv {len(sources)}")
    fer_row = {r.row: int(s["fer2013_row"]) for r, s in zip(records, sources)}
    out = {}
    for task in image_tasks(records, "train"):
        label = Path(yolo_train) / f"{task.stem}.txt"
        if not label.exists():
            raise EmoDetError(f"{label}: missing; convert {scenes} again (its sources and YOLO set disagree)")
        classes = read_yolo_rows(label)[:, 0].astype(int).tolist()
        if classes != [r.expression for r in task.records]:
            raise EmoDetError(f"{label}: classes {classes} differ from {scenes}/training.csv")
        out[str(label.with_suffix(".jpg").resolve())] = np.array(
            [table_index.get(fer_row[r.row], -1) for r in task.records], dtype=np.int64)
    return out


def teacher_soft_rows(images: list[Path], classifier: Path, hard: float, n_classes: int = 7, peak: bool = False
                      ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Soft targets from a FER classifier for every face of `images` (YOLO: a txt beside each jpg): (for each image,
    resolved path, the row of each of its labels in label order; the table: per face `hard` x its own label +
    (1 - `hard`) x the classifier's probabilities for the face cropped as the hybrid detector crops it, grey,
    with the classifier's default test-time augmentation). Why: on FER2013 faces the classifier reads expressions
    better than the detector's class head (FER-scenes: the hybrid, the classifier on the detector's boxes, well
    above the detector alone), and its probabilities say how ambiguous each face is, which a one-hot label
    cannot. `peak`: each row divided by its largest value, so the surest class's target is 1 as with a one-hot
    label: a detector's class score is also its confidence that a face is there, and targets that sum to 1 teach
    it to doubt every ambiguous face."""
    import cv2
    from scripts.classifiers import load_classifier
    from scripts.two_stage import face_crops
    model = load_classifier(Path(classifier), 1)
    rows, table, start = {}, [], 0
    for image in tracked(sorted(set(map(Path, images))), desc="teacher", unit="img"):
        label = image.with_suffix(".txt")
        labels = read_yolo_rows(label) if label.exists() else np.zeros((0, 5))
        if not len(labels):
            continue
        photo = cv2.imread(str(image))
        if photo is None:
            raise EmoDetError(f"{image}: not an image (distillation targets)")
        photo = cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY)  # as the hybrid sees it
        h, w = photo.shape
        cls, cx, cy, bw, bh = labels.T
        boxes = np.c_[(cx - bw / 2) * w, (cy - bh / 2) * h, bw * w, bh * h]
        probs = model.probabilities(face_crops(photo, boxes), n_classes)
        onehot = np.eye(n_classes, dtype=np.float32)[cls.astype(int)]
        table.append(hard * onehot + (1 - hard) * probs)
        rows[str(image.resolve())] = np.arange(start, start + len(labels))
        start += len(labels)
    if not table:
        raise EmoDetError("no labelled image to take distillation targets for")
    table = np.concatenate(table).astype(np.float32)
    return rows, table / table.max(1, keepdims=True) if peak else table


def encoded(cls: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Ultralytics' (n, 1) class column with each label's soft-target row folded in."""
    return cls + CODE * (rows.reshape(-1, 1) + 1).astype(cls.dtype)


def decoded(labels):
    """(plain classes, soft-target rows or -1) of an encoded class tensor."""
    import torch
    rows = torch.div(labels, CODE, rounding_mode="floor") - 1
    return labels - CODE * (rows + 1), rows


class SoftTargetAssigner:
    """Wraps Ultralytics' TaskAlignedAssigner: the assignment uses the plain class; the class targets of the
    assigned anchors become the soft distribution of their face, with the same per-anchor weight."""

    def __init__(self, inner, soft):
        self.inner, self.soft, self.faces = inner, soft, 0

    def __call__(self, pd_scores, pd_bboxes, anc_points, gt_labels, gt_bboxes, mask_gt, **kw):
        import torch
        hard, rows = decoded(gt_labels)
        out = list(self.inner(pd_scores, pd_bboxes, anc_points, hard, gt_bboxes, mask_gt, **kw))
        scores, gt_index = out[2], out[4]
        nc = scores.shape[-1]
        rows = rows.squeeze(-1).long()
        onehot = torch.nn.functional.one_hot(hard.squeeze(-1).long().clamp(0, nc - 1), nc).to(scores.dtype)
        per_face = torch.where((rows >= 0).unsqueeze(-1), self.soft.to(scores.dtype)[rows.clamp(min=0)], onehot)
        self.faces += int((rows >= 0).sum())
        out[2] = per_face.gather(1, gt_index.unsqueeze(-1).expand(-1, -1, nc)) * scores.sum(-1, keepdim=True)
        return tuple(out)


def soft_trainer(rows_by_image: dict[str, np.ndarray], soft: np.ndarray):
    """An Ultralytics DetectionTrainer class whose train set carries the soft-target rows and whose loss uses them."""
    import torch
    from ultralytics.models.yolo.detect import DetectionTrainer
    soft_t = torch.from_numpy(np.asarray(soft, dtype=np.float32))

    def fetch_with_rows(dataset):
        plain = dataset.get_image_and_label

        def get_image_and_label(index):
            label = plain(index)
            rows = rows_by_image.get(str(Path(label["im_file"]).resolve()))
            if rows is not None and len(rows) == len(label["cls"]):
                label["cls"] = encoded(label["cls"], rows)
            return label
        return get_image_and_label

    class SoftTargetTrainer(DetectionTrainer):
        def __init__(self, *a, **k):
            super().__init__(*a, **k)
            self.add_callback("on_train_start", self._soft_loss)
            self.add_callback("on_train_epoch_end", self._check_soft)

        def build_dataset(self, img_path, mode="train", batch=None):
            dataset = super().build_dataset(img_path, mode, batch)
            if mode == "train":  # Mosaic fetches its extra images through the same method
                dataset.get_image_and_label = fetch_with_rows(dataset)
            return dataset

        @staticmethod
        def _soft_loss(trainer):
            model = trainer.model
            model.criterion = model.init_criterion()  # after the class weights (cls_pw) are set
            model.criterion.assigner = SoftTargetAssigner(model.criterion.assigner, soft_t)

        @staticmethod
        def _check_soft(trainer):
            if trainer.model.criterion.assigner.faces == 0:
                raise EmoDetError("no train label carried a soft target; do the scenes match the soft-target CSV?")

    return SoftTargetTrainer
