"""Every shipped model file is in weights/MANIFEST.json with its checksum and size, a model card that exists, and
nothing is listed that is not shipped."""
import json

import pytest

from converters.settings import WEIGHTS_DIR
from scripts.manifest import MANIFEST, refreshed, sha256, shipped_files


@pytest.fixture(scope="module")
def manifest():
    return json.loads(MANIFEST.read_text())["files"]


def test_every_shipped_file_is_listed_and_nothing_else(manifest):
    assert sorted(manifest) == shipped_files()


def test_checksums_and_sizes_match(manifest):
    for name, entry in manifest.items():
        path = WEIGHTS_DIR / name
        assert path.stat().st_size == entry["bytes"], name
        assert sha256(path) == entry["sha256"], f"{name}: changed since the manifest was written"


def test_cards_and_recipes_exist(manifest):
    from converters.settings import PROJECT_ROOT
    for name, entry in manifest.items():
        assert (WEIGHTS_DIR / entry["card"]).exists(), f"{name}: card {entry.get('card')} missing"
        if name.endswith(".json"):  # fitted box mappings: their card gives the fitting command
            continue
        assert (PROJECT_ROOT / entry["recipe"]).exists(), f"{name}: recipe {entry.get('recipe')} missing"


def test_refresh_notices_a_changed_file(tmp_path):
    (tmp_path / "a.onnx").write_bytes(b"one")
    first = refreshed({"files": {"a.onnx": {"card": "a.md"}, "gone.pt": {}}}, tmp_path)
    assert list(first["files"]) == ["a.onnx"] and first["files"]["a.onnx"]["card"] == "a.md"
    (tmp_path / "a.onnx").write_bytes(b"two")
    assert refreshed(first, tmp_path)["files"]["a.onnx"]["sha256"] != first["files"]["a.onnx"]["sha256"]
