from __future__ import annotations

import os
from pathlib import Path

import pytest

from converters.settings import affectnet_sample_dir, fer2013_dir
from converters.synthetic import generate_sample

os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(scope="session")
def sample_dir(tmp_path_factory) -> Path:
    """A small synthetic AffectNet-format sample shared by the tests (about 120 faces)."""
    out = tmp_path_factory.mktemp("sample") / "affectnet"
    generate_sample(out, n_train=48, n_val=16, seed=7, workers=1, progress=False)
    return out


def _dataset_or_skip(folder: Path, marker: str, what: str) -> Path:
    if not (folder / marker).exists():
        pytest.skip(f"{what} not found at {folder} (set EMODET_DATASETS)")
    return folder


@pytest.fixture(scope="session")
def real_affectnet() -> Path:
    return _dataset_or_skip(affectnet_sample_dir(), "training.csv", "real AffectNet sample")


@pytest.fixture(scope="session")
def real_fer2013() -> Path:
    return _dataset_or_skip(fer2013_dir(), "fer2013.csv.gz", "FER2013")
