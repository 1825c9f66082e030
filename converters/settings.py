"""The one place for paths and settings shared by converters, scripts and eval."""
from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = PROJECT_ROOT / "data"
WEIGHTS_DIR = PROJECT_ROOT / "weights"
# the default FER classifier: eval/confusion.py's default weights, the two-stage and hybrid detectors' classifier
# and the app's
DEFAULT_CLASSIFIER = WEIGHTS_DIR / "faces-vggc.onnx"
# the FER classifier whose layers initialise the one-stage emotion detector (the vggdet backbone, cfg/vggdet.yaml)
FER2013_BACKBONE = WEIGHTS_DIR / "fer2013-vggdet-cls.pt"
# the default one-stage emotion detector of predict/eval/export: trained for real photos (cfg/recipes/real-det.yaml)
DEFAULT_DETECTOR = WEIGHTS_DIR / "real-det-int8.onnx"
RUNS_DIR = PROJECT_ROOT / "runs"
# `make convert-fer2013`'s FER2013 table (every split; ids f<csv row>): classifier training, evaluation, distillation
FER2013_TABLE = DATA_DIR / "fer2013" / "table" / "fer2013.h5"
CFG_DIR = PROJECT_ROOT / "cfg"
RESULTS_DIR = PROJECT_ROOT / "results"

# `make darknet`: AlexeyAB's Darknet built from source (git-ignored); preferred over a darknet on PATH
DARKNET_BUILD_DIR = PROJECT_ROOT / "build" / "darknet"

# the converter's partial JPEG decoder, compiled from converters/jpeg_region.c on first use (git-ignored)
JPEG_REGION_BUILD_DIR = PROJECT_ROOT / "build" / "jpeg-region"


def jpeg_region_enabled() -> bool:
    """Whether the converter decodes only the faces' part of a JPEG; EMODET_JPEG_REGION=0 decodes whole photos with
    OpenCV (the same pixels: for comparing both side by side)."""
    return os.environ.get("EMODET_JPEG_REGION", "1") != "0"


SAMPLE_AFFECTNET = DATA_DIR / "sample" / "affectnet"


def datasets_root() -> Path:
    """Real datasets (read-only): $EMODET_DATASETS, else ../shared/datasets beside the project."""
    env = os.environ.get("EMODET_DATASETS")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "datasets"


def engines_root() -> Path:
    """Engine source archives (read-only): $EMODET_ENGINES, else ../shared/engines beside the project."""
    env = os.environ.get("EMODET_ENGINES")
    return Path(env) if env else PROJECT_ROOT.parent / "shared" / "engines"


def fer2013_dir() -> Path:
    return datasets_root() / "fer2013"


def affectnet_sample_dir() -> Path:
    return datasets_root() / "affectnet-sample"
