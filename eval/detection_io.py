"""Reading ground truth and predictions for detection evaluation (YOLO folders, list files, Darknet results)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from PIL import Image

from converters.errors import EmoDetError
from converters.io import image_beside
from converters.yolo_format import read_yolo_rows, xywh_to_xyxy


def read_yolo_file(path: Path, with_conf: bool) -> np.ndarray:
    """One YOLO label file -> (n, 5) class+xyxy, or (n, 6) class+conf+xyxy when `with_conf` (6th column)."""
    a = read_yolo_rows(path, with_conf)
    boxes = xywh_to_xyxy(a[:, 1:5])
    return np.c_[a[:, 0], a[:, 5], boxes] if with_conf else np.c_[a[:, 0], boxes]


def label_paths(gt: Path) -> dict[str, Path]:
    """image id (stem) -> label file, from a folder of YOLO `.txt` files or a list file of image paths."""
    gt = Path(gt)
    if gt.is_dir():
        return {p.stem: p for p in sorted(gt.glob("*.txt"))}
    if gt.is_file():
        out = {}
        for line in gt.read_text().split():
            p = Path(line)
            out[p.stem] = p.with_suffix(".txt")
        return out
    raise EmoDetError(f"{gt}: no such ground-truth folder or list file")


def read_ground_truth(gt: Path) -> dict[str, np.ndarray]:
    """image id -> (n, 5) class + xyxy; a missing label file means an image without faces."""
    return {image: read_yolo_file(path, False) if path.exists() else np.zeros((0, 5))
            for image, path in label_paths(gt).items()}


def check_class_ids(boxes: dict[str, np.ndarray], n_classes: int, where: Path, column: int = 0) -> None:
    """Raise naming the first file whose class id is not an integer in 0..n_classes-1."""
    for image, a in boxes.items():
        ids = a[:, column]
        bad = (ids < 0) | (ids >= n_classes) | (ids != np.round(ids))
        if bad.any():
            raise EmoDetError(f"{where}/{image}.txt: class id {ids[bad][0]:g} outside 0..{n_classes - 1}")


def read_yolo_predictions(folder: Path) -> dict[str, np.ndarray]:
    """Ultralytics `save_txt` + `save_conf` output: one `<image>.txt` per image, `class cx cy w h conf`."""
    return {p.stem: read_yolo_file(p, True) for p in sorted(Path(folder).glob("*.txt"))}


DARKNET_RESULT = re.compile(r"comp4_det_test_(.+)\.txt$")


def image_sizes(gt: Path) -> dict[str, tuple[int, int]]:
    """(width, height) of each ground-truth image, found beside its label (converters.io.image_beside)."""
    sizes = {}
    for image, label in label_paths(gt).items():
        if (p := image_beside(label)) is not None:
            with Image.open(p) as im:
                sizes[image] = im.size
    return sizes


def read_darknet_results(folder: Path, names, sizes: dict[str, tuple[int, int]]) -> dict[str, np.ndarray]:
    """pjreddie `detector valid` output: `comp4_det_test_<class>.txt` with `<image> <score> x1 y1 x2 y2` in
    1-based pixels of the original image; converted to normalised xyxy so it compares with YOLO labels."""
    files = {m.group(1): p for p in Path(folder).glob("comp4_det_test_*.txt") if (m := DARKNET_RESULT.search(p.name))}
    if not files:
        raise EmoDetError(f"{folder}: no comp4_det_test_<class>.txt files (run `darknet detector valid` first)")
    per_image: dict[str, list] = {}
    for name, path in files.items():
        if name not in names:
            raise EmoDetError(f"{path}: class {name!r} is not in the names list")
        c = list(names).index(name)
        for k, line in enumerate(path.read_text().splitlines(), start=1):
            parts = line.split()
            if len(parts) != 6:
                raise EmoDetError(f"{path}:{k}: expected `image score x1 y1 x2 y2`")
            image, score, *xyxy = parts
            if image not in sizes:
                raise EmoDetError(f"{path}:{k}: image {image!r} has no ground truth / image file")
            w, h = sizes[image]
            x1, y1, x2, y2 = (float(v) - 1 for v in xyxy)
            per_image.setdefault(image, []).append([c, float(score), x1 / w, y1 / h, x2 / w, y2 / h])
    return {k: np.asarray(v, float) for k, v in per_image.items()}


DARKNET_JSON = "result.json"  # what scripts.darknet.detector_test writes (AlexeyAB `detector test -out`)


def read_darknet_json(path: Path, names) -> dict[str, np.ndarray]:
    """AlexeyAB `detector test -out result.json`: per image (by file stem) its boxes in the engine's own order,
    (n, 6) class, confidence, x1, y1, x2, y2 normalised; the engine's boxes, not clipped to the image."""
    import json
    try:
        frames = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise EmoDetError(f"{path}: not Darknet's JSON output ({exc})") from None
    out = {}
    for frame in frames:
        rows = []
        for k, o in enumerate(frame.get("objects", [])):
            c, r = int(o["class_id"]), o["relative_coordinates"]
            if not 0 <= c < len(names):
                raise EmoDetError(f"{path}: {frame.get('filename')}: class id {c} outside 0..{len(names) - 1}")
            x, y, w, h = (float(r[key]) for key in ("center_x", "center_y", "width", "height"))
            rows.append([c, float(o["confidence"]), x - w / 2, y - h / 2, x + w / 2, y + h / 2])
        out[Path(frame["filename"]).stem] = np.asarray(rows, float).reshape(-1, 6)
    return out


def read_names(path: Path | None, gts: dict) -> list[str]:
    if path:
        return [n for n in Path(path).read_text().split("\n") if n.strip()]
    from converters.labels import class_names
    top = max((int(a[:, 0].max()) for a in gts.values() if len(a)), default=6)
    return list(class_names(8 if top >= 7 else 7))
