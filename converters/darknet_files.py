"""Darknet's dataset files: `.data`, `.names` and image lists (what the converters write for it). The network's
own files, `.cfg` and `.weights`, belong to the engine: scripts/darknet_model.py.

Darknet quirks that shape these files (shared/ENGINES.md): the classifier takes an image's class from the first
class name found by substring search in its path; the detector finds labels by rewriting `images`,
`JPEGImages` and `raw` in the image path to `labels`.
"""
from __future__ import annotations

from pathlib import Path

from .errors import EmoDetError
from .io import atomic_write_text

LABEL_PATH_WORDS = ("images", "JPEGImages", "raw")


def data_file_text(entries: dict[str, object]) -> str:
    """`.data` file text: one `key=value` per line, in the given order."""
    return "".join(f"{k}={v}\n" for k, v in entries.items())


def read_data_file(path: Path) -> dict[str, str]:
    entries = {}
    for line in Path(path).read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            k, v = line.split("=", 1)
            entries[k.strip()] = v.strip()
    return entries


def write_names(path: Path, names) -> bool:
    return atomic_write_text(path, "".join(f"{n}\n" for n in names))


def classes_in_path(path: str, names) -> list[str]:
    """Class names that Darknet's classifier would find (by substring) in `path`."""
    return [n for n in names if n in path]


def check_classifier_path(path: str, expected: str, names) -> None:
    """Raise unless `expected` is the one and only class name occurring in `path`."""
    found = classes_in_path(path, names)
    if found != [expected]:
        raise EmoDetError(f"{path}: Darknet would read classes {found or 'none'} from this path, expected "
                          f"only {expected!r}; move the output folder to a path without class names")


def check_detector_image_path(path: str) -> None:
    """Raise when Darknet's label lookup would rewrite part of `path` (images/JPEGImages/raw) or miss `.jpeg`."""
    bad = [w for w in LABEL_PATH_WORDS if w in path]
    if bad or path.endswith(".jpeg"):
        raise EmoDetError(f"{path}: Darknet would look for this image's labels elsewhere (path contains "
                          f"{bad or ['.jpeg']}); choose an output folder without these words")
