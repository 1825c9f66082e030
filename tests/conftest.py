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


@pytest.fixture(scope="session")
def real_affectnet() -> Path:
    d = affectnet_sample_dir()
    if not (d / "training.csv").exists():
        pytest.skip(f"real AffectNet sample not found at {d} (set EMODET_DATASETS)")
    return d


@pytest.fixture(scope="session")
def real_fer2013() -> Path:
    d = fer2013_dir()
    if not (d / "fer2013.csv.gz").exists():
        pytest.skip(f"FER2013 not found at {d} (set EMODET_DATASETS)")
    return d
