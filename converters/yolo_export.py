"""Reader for YOLO detection exports (Roboflow, Ultralytics, CVAT...): `data.yaml` with class `names`, and per split
`<split>/images/*.jpg` beside `<split>/labels/*.txt` (or image and label in one folder). Class ids are mapped into
the canonical table by name (converters.labels.NAME_ALIASES), never by index: Roboflow's order is alphabetical.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from .affectnet import probe_image
from .errors import EmoDetError
from .io import images_in
from .labels import class_names, label_code
from .records import FaceRecord, ReadResult, Reject
from .yolo_format import parse_yolo_line

# export split folder -> our split name
SPLIT_FOLDERS = {"train": "train", "valid": "val", "val": "val", "test": "test"}

R_LINE = "label line malformed"
R_CLASS = "class id not in data.yaml names"
R_BOX = "box empty or outside the image"


def export_names(root: Path) -> list[str]:
    """Class names of an export's data.yaml, in id order (list or {id: name} form)."""
    path = Path(root) / "data.yaml"
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise EmoDetError(f"{path}: not found (a YOLO export needs data.yaml with its class names)") from None
    except yaml.YAMLError as exc:
        raise EmoDetError(f"{path}: not YAML ({str(exc).splitlines()[0]})") from None
    names = data.get("names") if isinstance(data, dict) else None
    if isinstance(names, dict):
        names = [names[k] for k in sorted(names)]
    if not isinstance(names, list) or not names:
        raise EmoDetError(f"{path}: no `names` list")
    return [str(n) for n in names]


def class_map(root: Path, n_classes: int = 7, names=None) -> dict[int, int]:
    """Export class id -> code in the label set (`names`: a dataset's own classes; default the canonical table of
    `n_classes`); an unknown name is refused in one line naming it and the file."""
    out = {}
    names = names or class_names(n_classes)
    for i, name in enumerate(export_names(root)):
        try:
            out[i] = label_code(name, names)
        except KeyError as exc:
            raise EmoDetError(f"{Path(root) / 'data.yaml'}: class {i}: {exc.args[0]}") from None
    return out


def export_splits(root: Path) -> dict[str, Path]:
    """Our split name -> the export's split folder, for the folders present."""
    return {ours: Path(root) / folder for folder, ours in SPLIT_FOLDERS.items() if (Path(root) / folder).is_dir()}


def _images(folder: Path) -> list[Path]:
    images = folder / "images" if (folder / "images").is_dir() else folder
    return images_in(images)


def _label_file(image: Path) -> Path:
    if image.parent.name == "images":
        return image.parent.parent / "labels" / f"{image.stem}.txt"
    return image.with_suffix(".txt")


def read_yolo_export(root: Path, split: str, n_classes: int = 7, names=None) -> ReadResult:
    """Every face of one split of an export as canonical records. An image without a label file (or with an
    empty one) has no faces; a bad line is rejected with file:line and its reason."""
    root = Path(root)
    folders = export_splits(root)
    if split not in folders:
        raise EmoDetError(f"{root}: no {split} split (found: {', '.join(sorted(folders)) or 'none'})")
    mapping = class_map(root, n_classes, names)
    records, rejects = [], []
    for k, image in enumerate(_images(folders[split]), start=1):
        label = _label_file(image)
        if not label.exists():
            continue
        size = probe_image(image)
        lines = label.read_text(errors="replace").splitlines()
        if isinstance(size, str):
            rejects.extend(Reject(str(label), n, size, "", str(image)) for n, t in enumerate(lines, 1) if t.strip())
            continue
        width, height = size
        for n, text in enumerate(lines, start=1):
            try:
                row = parse_yolo_line(text)
            except ValueError as exc:
                rejects.append(Reject(str(label), n, R_LINE, str(exc), str(image)))
                continue
            if row is None:
                continue
            cls, cx, cy, w, h = row
            if cls != int(cls) or int(cls) not in mapping:
                rejects.append(Reject(str(label), n, R_CLASS, f"{cls:g}", str(image)))
                continue
            x1, y1 = max(cx - w / 2, 0.0) * width, max(cy - h / 2, 0.0) * height
            x2, y2 = min(cx + w / 2, 1.0) * width, min(cy + h / 2, 1.0) * height
            if x2 - x1 < 1 or y2 - y1 < 1:
                rejects.append(Reject(str(label), n, R_BOX, f"{cx:g} {cy:g} {w:g} {h:g}", str(image)))
                continue
            records.append(FaceRecord(image=image, box=(x1, y1, x2 - x1, y2 - y1), expression=mapping[int(cls)],
                                      source=str(label), row=n, face_id=f"y{k:06d}_{n}", image_size=size,
                                      image_id=f"y{k:06d}"))
    return ReadResult(records, rejects)
