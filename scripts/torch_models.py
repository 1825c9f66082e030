"""Torch classifier architectures, registered by name with the preprocessing they expect (timm-style)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class Preprocess:
    input_size: int = 40  # network input (random crops of the 48 px face in training, centre/ten crops at test)
    source_size: int = 48
    mean: float = 0.5
    std: float = 0.25
    channels: int = 1
    tta: str = "none"  # the test-time augmentation the model was selected with: what its users get by default


def _conv(i: int, o: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


class FerVGG(nn.Module):
    """VGG-style stack of 3x3 conv pairs (the family behind the strongest single-model FER2013 results at
    40-48 px, e.g. Khaireddin & Chen 2021), narrowed so that it trains on 2 CPU cores."""

    def __init__(self, width: int = 64, n_classes: int = 7, dropout: float = 0.3, in_ch: int = 1):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv(in_ch, w), _conv(w, w), nn.MaxPool2d(2),
            _conv(w, 2 * w), _conv(2 * w, 2 * w), nn.MaxPool2d(2),
            _conv(2 * w, 4 * w), _conv(4 * w, 4 * w), nn.MaxPool2d(2),
            _conv(4 * w, 8 * w), _conv(8 * w, 8 * w))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(8 * w, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class FerTiny(nn.Module):
    """Depthwise-separable net for sub-millisecond CPU inference (batch 1, one thread)."""

    def __init__(self, width: int = 16, n_classes: int = 7, in_ch: int = 1):
        super().__init__()

        def sep(i, o, stride=1):
            return nn.Sequential(nn.Conv2d(i, i, 3, stride, 1, groups=i, bias=False), nn.BatchNorm2d(i),
                                 nn.ReLU(inplace=True), nn.Conv2d(i, o, 1, bias=False), nn.BatchNorm2d(o),
                                 nn.ReLU(inplace=True))
        w = width
        self.features = nn.Sequential(_conv(in_ch, w), sep(w, 2 * w, 2), sep(2 * w, 2 * w), sep(2 * w, 4 * w, 2),
                                      sep(4 * w, 4 * w), sep(4 * w, 8 * w, 2), sep(8 * w, 8 * w))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(0.2), nn.Linear(8 * w, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def _cfg(name: str) -> str:
    from converters.settings import CFG_DIR
    return str(CFG_DIR / name)


class YoloBackboneClassifier(nn.Module):
    """The backbone of an Ultralytics detector (every backbone layer of the -cls yaml: 0-8 of yolov8n, identical
    to yolov8n-cls; 0-15 of cfg/vggdet-cls.yaml, identical to cfg/vggdet.yaml) with a linear head, so that a FER
    classifier trained with our recipe (distillation, augmentation) can initialise the backbone of the one-stage
    emotion detector. Grey faces enter as three equal channels and are scaled like
    Ultralytics' input (x / 255), so the first layers carry over to the detector unchanged."""

    def __init__(self, n_classes: int = 7, cfg: str = "yolov8n-cls.yaml", dropout: float = 0.2):
        super().__init__()
        from scripts.ultra_env import ultralytics
        ultralytics()  # offline set-up first
        from ultralytics.nn.tasks import ClassificationModel
        from ultralytics.utils.torch_utils import initialize_weights
        body = ClassificationModel(cfg, ch=3, nc=n_classes, verbose=False)
        initialize_weights(body)  # the detector's batch-norm settings (eps 1e-3, momentum 0.03), unlike -cls models'
        self.backbone_spec = body.yaml["backbone"]  # what the detector's transfer compares layer by layer
        self.features = nn.Sequential(*body.model[:len(self.backbone_spec)])
        width = self.features[-1].cv2.conv.out_channels
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(width, n_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x.expand(-1, 3, -1, -1)))


MODELS = {
    "fervgg-m": (lambda n: FerVGG(64, n), Preprocess()),
    "fervgg-c": (lambda n: FerVGG(40, n), Preprocess()),
    "fervgg-s": (lambda n: FerVGG(32, n), Preprocess()),
    "v8n-cls": (lambda n: YoloBackboneClassifier(n), Preprocess(mean=0.0, std=1.0)),
    "v8s-cls": (lambda n: YoloBackboneClassifier(n, "yolov8s-cls.yaml"), Preprocess(mean=0.0, std=1.0)),
    "vggdet-cls": (lambda n: YoloBackboneClassifier(n, _cfg("vggdet-cls.yaml")), Preprocess(mean=0.0, std=1.0)),
    "fertiny": (lambda n: FerTiny(16, n), Preprocess(input_size=40)),
}


def load_checkpoint(path) -> tuple[nn.Module, Preprocess, list[str], str]:
    """(model in eval mode, preprocessing, class names, architecture) of an EmoDet torch checkpoint."""
    return model_from_checkpoint(torch.load(path, map_location="cpu", weights_only=False), path)


def model_from_checkpoint(ck, path) -> tuple[nn.Module, Preprocess, list[str], str]:
    """load_checkpoint for a checkpoint already read from `path` (named in the error)."""
    from converters.errors import EmoDetError
    if not isinstance(ck, dict) or "arch" not in ck:
        raise EmoDetError(f"{path}: not an EmoDet torch classifier checkpoint (no 'arch')")
    model, _ = build_model(ck["arch"], len(ck["classes"]))
    model.load_state_dict(ck["model"])
    model.eval()
    return model, Preprocess(**ck["preprocess"]), list(ck["classes"]), ck["arch"]


def build_model(name: str, n_classes: int = 7) -> tuple[nn.Module, Preprocess]:
    from converters.errors import EmoDetError
    if name not in MODELS:
        raise EmoDetError(f"unknown torch model {name!r}; choose from {', '.join(MODELS)}")
    factory, prep = MODELS[name]
    return factory(n_classes), prep
