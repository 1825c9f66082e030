"""The one module that drives Ultralytics (pinned in requirements.txt): offline set-up, classifier training,
backbone transfer into a detector, detector training, prediction and ONNX export.

Offline by construction (shared/ENGINES.md): YOLO_OFFLINE/YOLO_AUTOINSTALL/YOLO_CONFIG_DIR are set before the
first import, settings sync is off, models are built from *.yaml or local *.pt only, and a local TTF stands in
for Arial.ttf so plotting never reaches for the network.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

from converters.errors import EmoDetError
from converters.parallel import usable_cores
from converters.settings import CFG_DIR, RUNS_DIR
from scripts.device import cpu_has_bf16
from scripts.onnx_graph import faster_detector
from scripts.ultra_env import OMP_THREADS_GIVEN, ultralytics

DETECTORS = {"v3-tiny": "yolov3-tiny.yaml", "v8n": "yolov8n.yaml", "v8s": "yolov8s.yaml", "11n": "yolo11n.yaml",
             "vggdet": str(CFG_DIR / "vggdet.yaml")}
CLASSIFIERS = {"v8n": "yolov8n-cls.yaml", "11n": "yolo11n-cls.yaml"}
# the detector whose backbone each EmoDet backbone-classifier architecture (scripts/torch_models.py) repeats
BACKBONE_DETECTORS = {"v8n-cls": "v8n", "v8s-cls": "v8s", "vggdet-cls": "vggdet"}


def model_yaml(name: str, table: dict) -> str:
    """A known short name (v8n, 11n, v3-tiny) or a path to any Ultralytics model yaml."""
    if name in table:
        return table[name]
    if name.endswith((".yaml", ".yml")) and (Path(name).exists() or "/" not in name):
        return name
    raise EmoDetError(f"unknown model {name!r}; use one of {', '.join(table)} or a model .yaml path")


def version() -> str:
    return ultralytics().__version__


def _train_kwargs(task: str, project: Path, name: str, n_images: int, **given) -> dict:
    """cfg/ultralytics.yaml defaults, overridden by the caller's values that are not None; cache, workers, batch
    and epochs left to the data and the machine (scripts/train_settings.py) where neither sets them."""
    from scripts.device import describe, resolve_device
    from scripts.train_settings import choose, this_machine
    cfg = defaults(task)
    kw = dict(cfg, **{k: v for k, v in given.items() if v is not None})
    kw["device"] = resolve_device(str(kw.get("device", "auto")))
    if kw["device"] != "cpu":
        kw["amp"] = given.get("amp", True)  # mixed precision is a GPU feature (our bf16 hook covers the CPU)
    c = choose(task, n_images, int(kw["imgsz"]), this_machine(kw["device"], Path(project)), cfg, given)
    kw.update(cache=c.cache, workers=c.workers, batch=c.batch, epochs=c.epochs)
    if c.why:
        print(f"settings for this data and machine: {c.text()}", flush=True)
    print(f"Ultralytics {task} training on {describe(kw['device'])}", flush=True)
    return dict(kw, project=str(Path(project).resolve()), name=name, exist_ok=True, verbose=False)


def training_threads() -> int:
    """Threads for CPU training: OMP_NUM_THREADS where the user set it, else every core this process may use."""
    given = OMP_THREADS_GIVEN
    return int(given) if given.isdigit() and int(given) > 0 else usable_cores()


def all_cores(trainer) -> None:
    """Callback (on_pretrain_routine_start): torch's thread count back to training_threads(). Why: Ultralytics'
    select_device sets it to cpu_count - 1 for CPU training (its data loaders are meant to have the last core),
    which on a 2-core machine is one thread: vggdet's training step then takes twice as long (6.7 vs 3.4 s a batch
    of 16 at 320 px), while our loaders run in the training process itself (workers 0-1)."""
    import torch
    if trainer.device.type == "cpu":
        torch.set_num_threads(training_threads())


def defaults(task: str) -> dict:
    """Training defaults of one task (classify/detect) merged with the common ones, from cfg/ultralytics.yaml."""
    import yaml
    from converters.settings import CFG_DIR
    spec = yaml.safe_load((CFG_DIR / "ultralytics.yaml").read_text())
    return {**spec["common"], **spec[task]}


def train_classifier(crops: Path, model: str = "v8n", epochs: int | None = None, imgsz: int | None = None,
                     batch: int | None = None, workers: int | None = None, seed: int = 0,
                     project: Path = RUNS_DIR / "ultralytics", name: str = "cls", **extra) -> Path:
    """Train an Ultralytics -cls model on `crops/<size>` (train/ and val/ class folders); returns best.pt."""
    for split in ("train", "val"):
        if not (Path(crops) / split).is_dir():
            raise EmoDetError(f"{crops}/{split}: missing; convert with the crops format first (make convert)")
    ul = ultralytics()
    yolo = ul.YOLO(model_yaml(model, CLASSIFIERS), task="classify")
    from scripts.train_settings import count_images
    yolo.add_callback("on_pretrain_routine_start", all_cores)
    yolo.train(data=str(Path(crops).resolve()), **_train_kwargs("classify", project, name, count_images(crops),
                                                             epochs=epochs, imgsz=imgsz, batch=batch, workers=workers,
                                                             seed=seed, **extra))
    return _best(Path(project) / name)


def publish(best: Path, name: str) -> Path:
    """Copy a run's best weights to weights/<name>.pt (runs/ is scratch; weights/ is what users load)."""
    from converters.settings import WEIGHTS_DIR
    WEIGHTS_DIR.mkdir(exist_ok=True)
    dst = WEIGHTS_DIR / f"{name}.pt"
    shutil.copyfile(best, dst)
    return dst


def _best(run: Path) -> Path:
    for candidate in (run / "weights" / "best.pt", run / "weights" / "last.pt"):
        if candidate.exists():
            return candidate
    raise EmoDetError(f"{run}: training produced no weights")


@dataclass
class Transfer:
    moved: list[str] = field(default_factory=list)
    parameters: int = 0
    skipped: list[str] = field(default_factory=list)  # layers declared differently, tensors whose shape differs

    def layers(self) -> int:
        """How many leading detector layers the moved tensors reach (layers 0..n-1: the part to freeze)."""
        return 1 + max(int(key.split(".")[1]) for key in self.moved)

    def summary(self) -> str:
        return (f"moved {len(self.moved)} tensors ({self.parameters:,} values) from the classifier backbone"
                + (f"; not moved: {', '.join(self.skipped)}" if self.skipped else ""))


def classifier_backbone(cls_weights: Path) -> tuple[dict, list]:
    """(state dict named like the detector's, "model.<layer>.<tensor>"; the yaml backbone spec) of a trained
    classifier: an Ultralytics -cls checkpoint or an EmoDet torch checkpoint of a backbone architecture
    (BACKBONE_DETECTORS: v8n-cls, v8s-cls, vggdet-cls)."""
    import torch
    src = torch.load(cls_weights, map_location="cpu", weights_only=False)
    if isinstance(src, dict) and "arch" in src:
        from scripts.torch_models import model_from_checkpoint
        model = model_from_checkpoint(src, cls_weights)[0]
        if not hasattr(model, "backbone_spec"):
            raise EmoDetError(f"{cls_weights}: a {src['arch']} classifier has no detector backbone; train one "
                              f"of {', '.join(BACKBONE_DETECTORS)}")
        sd = {f"model.{k.removeprefix('features.')}": v for k, v in model.state_dict().items()
              if k.startswith("features.")}
        return sd, model.backbone_spec
    src_model = (src.get("ema") or src["model"]) if isinstance(src, dict) else src
    return src_model.float().state_dict(), src_model.yaml.get("backbone", [])


def backbone_detector(cls_weights: Path) -> str:
    """The detector family (a DETECTORS key) that an EmoDet backbone classifier checkpoint initialises."""
    import torch
    src = torch.load(cls_weights, map_location="cpu", weights_only=False)
    arch = src.get("arch") if isinstance(src, dict) else None
    if arch not in BACKBONE_DETECTORS:
        raise EmoDetError(f"{cls_weights}: not an EmoDet backbone classifier ({', '.join(BACKBONE_DETECTORS)}); "
                          f"name the detector family")
    return BACKBONE_DETECTORS[arch]


def transfer_backbone(cls_weights: Path, det_cfg: str, nc: int):
    """Detection model built from `det_cfg` with `nc` classes, whose backbone layers (by index *and* tensor name;
    every layer of the classifier's backbone: 0-8 of yolov8n-cls, 0-15 of cfg/vggdet-cls.yaml) are copied from a
    trained -cls checkpoint. Returns (model, Transfer report). Refuses when nothing matches."""
    ultralytics()  # offline set-up before torch.load unpickles Ultralytics classes
    from ultralytics.nn.tasks import DetectionModel
    src_sd, src_spec = classifier_backbone(cls_weights)
    layers = range(len(src_spec))
    det = DetectionModel(cfg=model_yaml(det_cfg, DETECTORS), nc=nc, verbose=False)
    dst_sd = det.state_dict()
    report = Transfer()
    # A layer moves only when both models declare it identically in their yaml (module type, arguments, inputs)
    # and every tensor matches by name and shape: equal shapes alone can pair unrelated layers.
    dst_spec = det.yaml.get("backbone", [])
    same_layers = {i for i in layers if i < min(len(src_spec), len(dst_spec)) and src_spec[i] == dst_spec[i]}
    report.skipped = sorted({f"layer {i}" for i in layers} - {f"layer {i}" for i in same_layers})
    for key, value in src_sd.items():
        parts = key.split(".")
        if len(parts) < 3 or parts[0] != "model" or not parts[1].isdigit() or int(parts[1]) not in same_layers:
            continue
        if key not in dst_sd or dst_sd[key].shape != value.shape:
            report.skipped.append(key)
            continue
        dst_sd[key] = value.clone()
        report.moved.append(key)
        report.parameters += value.numel()
    if not report.moved:
        raise EmoDetError(f"{cls_weights}: no backbone tensor matches {det_cfg} by layer index, name and shape "
                          f"(different family or width?); train the classifier with the same family")
    det.load_state_dict(dst_sd)
    det.args = {"nc": nc}
    return det, report


def save_detection_init(model, names, path: Path) -> Path:
    """An Ultralytics-loadable checkpoint of an untrained detection model (the transfer's output)."""
    import torch
    from copy import deepcopy
    m = deepcopy(model).float()
    m.names = {i: n for i, n in enumerate(names)}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": m, "epoch": -1, "train_args": {}, "version": version()}, path)
    return path


def train_detector(data_yaml: Path, init: str | Path = "v8n", epochs: int | None = None, imgsz: int | None = None,
                   batch: int | None = None, workers: int | None = None, seed: int = 0,
                   project: Path = RUNS_DIR / "ultralytics", name: str = "det", freeze: int | None = None,
                   trainer=None, **extra) -> Path:
    """Train a detector from a model name/yaml (from scratch) or a local .pt (e.g. the transfer's output);
    `trainer`: an Ultralytics DetectionTrainer subclass (e.g. scripts.det_distill.soft_trainer's)."""
    ul = ultralytics()
    init = str(init)
    source = init if init.endswith(".pt") else model_yaml(init, DETECTORS)
    if init.endswith(".pt") and not Path(init).exists():
        raise EmoDetError(f"{init}: no such checkpoint (a missing .pt would be downloaded; offline we refuse)")
    yolo = ul.YOLO(source, task="detect")
    from scripts.train_settings import count_images
    kw = _train_kwargs("detect", project, name, count_images(data_yaml), epochs=epochs, imgsz=imgsz, batch=batch,
                       workers=workers, seed=seed, freeze=freeze or None, **extra)
    yolo.add_callback("on_pretrain_routine_start", all_cores)
    if kw.pop("bf16", False) and kw.get("device") == "cpu" and cpu_has_bf16():
        yolo.add_callback("on_train_start", bf16_training_forward)
        yolo.add_callback("on_train_end", plain_training_forward)
    yolo.train(data=str(data_yaml), trainer=trainer, **kw)
    return _best(Path(project) / name)


INPUT_KEY = "emodet_input"  # checkpoint / ONNX metadata key: "grey" for a detector that sees grey images only


def photo_input_loader(load, grey: bool, soften: float, sides: tuple[int, int], augment: bool, rng=None):
    """An Ultralytics dataset's `load_image` (`load`: index -> image, original and resized (h, w)) whose images come
    out grey (`grey`) and, when `augment` (training), softened with probability `soften` as if taken at a long
    side drawn from `sides`."""
    import random
    from converters.crops import grey_bgr, softened
    rng = rng or random

    def load_image(i, *args, **kwargs):
        im, hw0, hw = load(i, *args, **kwargs)
        if augment and soften and rng.random() < soften:
            im = softened(im, rng.randint(*sides))
        return (grey_bgr(im) if grey else im), hw0, hw
    return load_image


def photo_input_trainer(grey: bool = False, soften: float = 0.0, soften_sides: tuple[int, int] = (96, 200),
                        base=None):
    """An Ultralytics DetectionTrainer class (subclassing `base`, default DetectionTrainer) whose images are turned
    grey (training and validation: the detector is then used on grey input everywhere) and, with probability
    `soften` per training image, softened as if taken at a long side drawn from `soften_sides`.
    Why: in a mix of sources the sources differ in colour and sharpness as much as in their label mix (grey
    160 px face photos mostly neutral or happy, sharp colour close-ups mostly angry or surprised); a detector
    learns the source instead of the face, and calls a sharp colour smile angry."""
    if base is None:
        from ultralytics.models.yolo.detect import DetectionTrainer as base

    class PhotoInputTrainer(base):
        def build_dataset(self, img_path, mode="train", batch=None):
            dataset = super().build_dataset(img_path, mode, batch)
            # Mosaic draws its extra images through the same method; a RAM cache keeps the images as read
            dataset.load_image = photo_input_loader(dataset.load_image, grey, soften, soften_sides, dataset.augment)
            return dataset

        def save_model(self):
            super().save_model()
            if grey:  # every checkpoint says what input it wants, so predict, eval and export follow it
                import torch
                # last.pt is written every epoch, best.pt in the epochs that improve (Ultralytics' own condition)
                for path in [self.last] + ([self.best] if self.best_fitness == self.fitness else []):
                    ck = torch.load(path, map_location="cpu", weights_only=False)
                    torch.save(dict(ck, **{INPUT_KEY: "grey"}), path)

    return PhotoInputTrainer


def _as_float(out):
    """Network outputs (tensors, possibly nested in lists/tuples/dicts) back in float32 for the loss."""
    import torch
    if torch.is_tensor(out):
        return out.float()
    if isinstance(out, dict):
        return {k: _as_float(v) for k, v in out.items()}
    if isinstance(out, (list, tuple)):
        return type(out)(_as_float(v) for v in out)
    return out


def bf16_training_forward(trainer) -> None:
    """Callback: the training model's forward pass runs under CPU bfloat16 autocast, its outputs back in float32.
    Why: Ultralytics' own `amp='bf16'` is CUDA-only, and on a CPU with AVX-512 BF16 the forward and backward of a
    v8n at 320 px take half the time (0.37 vs 0.70 s per batch of 16 on one thread). The loss (target assignment,
    IoU, sums over anchors) stays in float32 and the weights stay float32; validation and the saved EMA copy,
    made before this runs, are untouched."""
    import torch
    model, plain = trainer.model, trainer.model.predict
    # Channels-last activations run oneDNN's convolutions and max-pooling without layout reorders: a training step
    # of v8n at 320 px 15 % faster, of vggdet (full-resolution stem) 1.4x. Parameters are converted in place, so
    # the optimizer's references stay valid; the EMA copy (saved and validated) keeps the default layout.
    model.to(memory_format=torch.channels_last)

    def predict(*args, **kwargs):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out = plain(*args, **kwargs)
        return _as_float(out)
    model.predict = predict


def plain_training_forward(trainer) -> None:
    """Callback: undo bf16_training_forward (the instance attribute would not pickle with the model)."""
    import torch
    trainer.model.__dict__.pop("predict", None)
    trainer.model.to(memory_format=torch.contiguous_format)


def train_detector_frozen_first(data_yaml: Path, init: Path, frozen_epochs: int, epochs: int, layers: int = 9,
                                project: Path = RUNS_DIR / "ultralytics", name: str = "det", **kw) -> Path:
    """Two phases: `frozen_epochs` with the transferred backbone (layers 0..layers-1) frozen, so the fresh neck
    and head adapt first, then the rest of `epochs` with everything trainable (a new schedule from phase 1's
    last weights)."""
    if not 0 < frozen_epochs < epochs:
        raise EmoDetError(f"frozen epochs must lie between 0 and {epochs}, got {frozen_epochs}")
    train_detector(data_yaml, init, frozen_epochs, project=project, name=f"{name}-frozen", freeze=layers, **kw)
    last = Path(project) / f"{name}-frozen" / "weights" / "last.pt"
    return train_detector(data_yaml, last, epochs - frozen_epochs, project=project, name=name, **kw)


def export_onnx(weights: Path, imgsz: int, dynamic: bool = False) -> Path:
    """ONNX export beside the weights (input `imgsz`; `dynamic`: any input side, for several inference sizes)."""
    ul = ultralytics()
    yolo = ul.YOLO(str(weights))
    path = Path(yolo.export(format="onnx", imgsz=imgsz, device="cpu", simplify=True, dynamic=dynamic))
    if yolo.task == "detect":
        faster_detector(path, (yolo.ckpt or {}).get(INPUT_KEY) == "grey")
    if (yolo.ckpt or {}).get(INPUT_KEY):  # the input the detector wants travels with it
        set_onnx_metadata(path, {INPUT_KEY: yolo.ckpt[INPUT_KEY]})
    return path


def set_onnx_metadata(path: Path, values: dict[str, str]) -> None:
    """Add (or replace) custom metadata entries of an ONNX model, in place."""
    import onnx
    model = onnx.load(str(path))
    kept = [p for p in model.metadata_props if p.key not in values]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for k, v in values.items():
        model.metadata_props.add(key=k, value=str(v))
    onnx.save(model, str(path))
