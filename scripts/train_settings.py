"""Training settings that follow the data and the machine: image caching, dataloader workers, batch size and
epochs, for the values a recipe or cfg/ultralytics.yaml leaves at `auto`. A value the user sets always wins; a
training prints what was chosen and why.

The same code sizes a 300-photo demo on a 2-core CPU (everything in RAM, 2 workers, 30 epochs) and AffectNet's
283,901 training photos on a GPU machine (decoded images cached on disk, not in tens of GB of RAM; a batch sized
to the GPU's memory; a few epochs, as the published recipe's 14,000 x 64 images are about three passes).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

AUTO = "auto"
RAM_SHARE = 0.5  # of the memory free now that an image cache may take: the trainer and its workers need the rest
SMALL_SET = 20_000  # photos; up to here a set trains for the task's full epochs
MIN_EPOCHS = 3
GPU_BATCH_PER_GB = {"classify": 16, "detect": 1}  # images per GB of GPU memory at 256 px (scaled by input area)
MAX_WORKERS = 8  # dataloader processes per training process: beyond this decoding no longer limits a GPU


@dataclass(frozen=True)
class Machine:
    cores: int
    ram_free: int  # bytes available now (MemAvailable)
    disk_free: int  # bytes free where the cache would go
    gpus: int = 0  # used by this training (the resolved device)
    gpu_memory: int = 0  # bytes on the smallest of them


@dataclass(frozen=True)
class Choices:
    cache: bool | str  # True (RAM), "disk" or False
    workers: int
    batch: int
    epochs: int
    why: list[str] = field(default_factory=list)

    def text(self) -> str:
        return "; ".join(self.why)


def cache_bytes(n_images: int, imgsz: int) -> int:
    """RAM a cache of decoded training images takes: three bytes per pixel at the training size."""
    return n_images * imgsz * imgsz * 3


def choose(task: str, n_images: int, imgsz: int, machine: Machine, cfg: dict, given: dict) -> Choices:
    """The settings for a training of `n_images` photos at `imgsz` px on `machine`. `given`: the user's values
    (None: not set), kept as they are. `cfg`: cfg/ultralytics.yaml's; its `cache` and `workers` are normally
    `auto`, its `batch` is the CPU batch and its `epochs` the count for a small set."""
    why = []

    def pick(key, value, reason):
        if given.get(key) not in (None, AUTO):
            return given[key]
        if key in ("cache", "workers") and cfg.get(key, AUTO) != AUTO:
            return cfg[key]
        why.append(f"{key}={value} ({reason})")
        return value

    need = cache_bytes(n_images, imgsz)
    if need <= RAM_SHARE * machine.ram_free:
        cache = pick("cache", True, f"{_gb(need)} of decoded images fit in RAM, {_gb(machine.ram_free)} free")
    elif need <= RAM_SHARE * machine.disk_free:
        cache = pick("cache", "disk", f"{_gb(need)} of decoded images; RAM has {_gb(machine.ram_free)} free")
    else:
        cache = pick("cache", False, f"{_gb(need)} of decoded images fit neither RAM nor disk")
    per_process = machine.cores // max(1, machine.gpus)
    workers = pick("workers", max(1, min(MAX_WORKERS, per_process - 1)) if machine.gpus else min(2, machine.cores),
                   f"{machine.cores} cores" + (f", {machine.gpus} GPU processes" if machine.gpus > 1 else ""))
    if machine.gpus:
        per_gpu = GPU_BATCH_PER_GB[task] * machine.gpu_memory / 2 ** 30 * (256 / imgsz) ** 2
        value = max(8, min(256, 8 * int(per_gpu // 8))) * machine.gpus
        batch = pick("batch", value, f"{_gb(machine.gpu_memory)} on each of {machine.gpus} GPU(s) at {imgsz} px")
    else:
        batch = pick("batch", int(cfg["batch"]), "the CPU batch")
    full = int(cfg["epochs"])
    value = full if n_images <= SMALL_SET else max(MIN_EPOCHS, round(full * SMALL_SET / n_images))
    epochs = pick("epochs", value, f"{n_images:,} training images" + (
        "" if n_images <= SMALL_SET else f", about {full * SMALL_SET:,} images seen"))
    return Choices(cache, int(workers), int(batch), int(epochs), why)


def _gb(n: float) -> str:
    return f"{n / 2 ** 30:.1f} GB"


def this_machine(device: str, cache_dir: Path) -> Machine:
    """What this machine has now, for a training on `device` (a resolved spelling: 'cpu', '0', '0,1')."""
    ram = _mem_available()
    disk = shutil.disk_usage(Path(cache_dir) if Path(cache_dir).exists() else Path.cwd()).free
    if device == "cpu":
        return Machine(os.cpu_count() or 1, ram, disk)
    import torch
    ids = [int(i) for i in device.split(",")]
    memory = min(torch.cuda.get_device_properties(i).total_memory for i in ids)
    return Machine(os.cpu_count() or 1, ram, disk, len(ids), memory)


def _mem_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import psutil
    return psutil.virtual_memory().available


def count_images(path: Path) -> int:
    """Training images of an Ultralytics dataset: files under a classification root's train/, or the train
    entry of a detection data.yaml (a folder of images or a list file)."""
    from converters.io import is_image
    path = Path(path)
    if path.is_dir():
        return sum(1 for p in (path / "train").rglob("*") if is_image(p))
    import yaml
    spec = yaml.safe_load(path.read_text())
    train = Path(spec.get("path") or path.parent) / spec["train"]
    if train.is_file():
        return sum(1 for line in train.read_text().splitlines() if line.strip())
    return sum(1 for p in train.rglob("*") if is_image(p))
