"""The one module that knows Ultralytics' dataset files (detection `data.yaml`, classification folder layout)."""
from __future__ import annotations

import json
from pathlib import Path

from .io import atomic_write_text


def detection_yaml_text(root: Path, splits: dict[str, str], names) -> str:
    """Ultralytics detection dataset YAML. `splits` maps train/val/test to folders relative to `root`.

    Ultralytics finds a label by swapping the last `/images/` of the image path for `/labels/`; our images and
    labels share one folder with no `images` component, so each `.txt` is read from beside its image.
    """
    lines = [f"path: {json.dumps(str(Path(root).resolve()))}"]
    lines += [f"{k}: {json.dumps(v)}" for k, v in splits.items()]
    lines.append(f"nc: {len(names)}")
    lines.append("names:")
    lines += [f"  {i}: {n}" for i, n in enumerate(names)]
    return "\n".join(lines) + "\n"


def write_detection_yaml(path: Path, root: Path, splits: dict[str, str], names) -> bool:
    return atomic_write_text(path, detection_yaml_text(root, splits, names))
