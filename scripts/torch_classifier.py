"""`make train-classifier BACKEND=torch`: a FER classifier trained on the converters' HDF5 table, on the CPU.

Protocol (FER2013): train on Training, select the checkpoint on PublicTest only, report PrivateTest once.
Checkpoints hold model, optimizer, scheduler, epoch and args; `--resume` continues from the last one.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import time
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from converters.errors import EmoDetError, run_cli
from converters.labels import SPLIT_TO_USAGE, class_names
from converters.writers import table_names
from converters.settings import FER2013_TABLE, RUNS_DIR
from converters.progress import tracked
from scripts.device import DEVICE_HELP, describe, resolve_device, torch_device
from scripts.torch_models import Preprocess, build_model


def load_split(h5_path: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """(faces uint8 (N, 48, 48), canonical labels) of one split (train/val/test or a FER2013 Usage name)."""
    usage = SPLIT_TO_USAGE.get(split, split)
    try:
        with h5py.File(h5_path, "r") as h5:
            x, y = h5[f"{usage}_pixel"][:], h5[f"{usage}_label"][:]
    except FileNotFoundError:
        raise EmoDetError(f"{h5_path}: not found; run `make convert-fer2013` first") from None
    except KeyError:
        raise EmoDetError(f"{h5_path}: has no {usage}_pixel/{usage}_label") from None
    side = int(round(math.sqrt(x.shape[1])))
    return x.reshape(-1, side, side), y.astype(np.int64)


def label_names(h5_path: Path, n_classes: int) -> tuple[str, ...]:
    """What the model predicts: a table's own classes when it declares custom ones, else the canonical 7 or 8."""
    from converters.labels import is_canonical
    declared = table_names(h5_path)  # converters.writers: the table format's owner
    return declared if declared and not is_canonical(declared) else class_names(n_classes)


def training_mix(main: Path, extras: list[str], even: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The main table's train faces plus each `TABLE.h5[:REPEAT]`'s train faces, listed REPEAT times (default 1):
    how real face photos join FER2013 without being drowned by its 28,558 faces. With `even` > 1, each class of an
    extra table is also listed up to `even` times more, towards its largest class: real photos of sad or disgusted
    faces are a few hundred, and the main table's classes would otherwise hide them."""
    x, y = load_split(main, "train")
    xs, ys = [x], [y]
    for spec in extras:
        path, _, repeat = spec.partition(":")
        ex, ey = load_split(Path(path), "train")
        if ex.shape[1:] != x.shape[1:]:
            raise EmoDetError(f"{path}: faces {ex.shape[1]} px, the main table's are {x.shape[1]} px")
        if even > 1:
            counts = np.bincount(ey)
            times = np.clip(np.rint(counts.max() / np.maximum(counts, 1)), 1, even).astype(int)
            idx = np.concatenate([np.flatnonzero(ey == c).repeat(times[c]) for c in range(len(counts))])
            ex, ey = ex[np.sort(idx)], ey[np.sort(idx)]
        n = int(repeat or 1)
        xs += [ex] * n
        ys += [ey] * n
    return np.concatenate(xs), np.concatenate(ys)


def macro_recall(logits: np.ndarray, labels: np.ndarray, classes: np.ndarray) -> float:
    """Mean per-class recall over `classes` (those with enough faces to measure; see --min-support)."""
    pred = logits.argmax(1)
    return float(np.mean([(pred[labels == c] == c).mean() for c in classes])) if len(classes) else float("nan")


def selection_score(logits_val: np.ndarray, y_val: np.ndarray, logits_sel: np.ndarray | None = None,
                    y_sel: np.ndarray | None = None, classes: np.ndarray | None = None) -> dict:
    """PublicTest top-1, and with a second validation set the mean of it and that set's macro recall over
    `classes`: what a model is selected by (--select-extra)."""
    top1 = accuracy(logits_val, y_val)
    if logits_sel is None:
        return dict(val_top1=top1, score=top1)
    extra = macro_recall(logits_sel, y_sel, classes)
    return dict(val_top1=top1, extra_macro_recall=extra, score=(top1 + extra) / 2)


def supported_classes(h5_path: Path, min_support: int) -> np.ndarray:
    """Classes with at least `min_support` faces over every split of a table (the dataset, not one split, decides,
    so a rare class's small validation share still counts)."""
    counts = sum(np.bincount(load_split(h5_path, s)[1], minlength=8) for s in ("train", "val"))
    return np.flatnonzero(counts >= min_support)


def load_soft_targets(csv_path: Path, n: int) -> np.ndarray:
    rows = [r for r in csv.reader(line for line in csv_path.open() if not line.startswith("#"))][1:]
    soft = np.array([[float(v) for v in r[1:]] for r in rows], dtype=np.float32)
    if len(soft) != n:
        raise EmoDetError(f"{csv_path}: {len(soft)} rows for {n} training faces")
    return soft


def normalise(x: torch.Tensor, prep: Preprocess) -> torch.Tensor:
    return (x.float() / 255.0 - prep.mean) / prep.std


def augment(x: torch.Tensor, prep: Preprocess, gen: torch.Generator, size: int | None = None) -> torch.Tensor:
    """Batch augmentation on (N, 1, 48, 48) floats: random affine (±10°, scale 0.9-1.1, shift ±4 px) into a
    random crop of `input_size`, horizontal flip, and random erasing; all vectorised. `size` renders the same
    crop at another resolution (size x size pixels), for training at several face scales."""
    n, size = x.shape[0], size or prep.input_size
    s = prep.input_size / prep.source_size
    angle = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(10)
    scale = s * (0.9 + 0.2 * torch.rand(n, generator=gen))
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    shift = (torch.rand(n, 2, generator=gen) * 2 - 1) * (1 - s + 8 / prep.source_size)
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, (n, x.shape[1], size, size), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    # random erasing (Zhong et al. 2020): one rectangle of 2-20 % of the area in half of the images
    erase = torch.rand(n, generator=gen) < 0.5
    area = 0.02 + 0.18 * torch.rand(n, generator=gen)
    side = (area.sqrt() * size).long().clamp(min=1)
    y0 = (torch.rand(n, generator=gen) * (size - side)).long()
    x0 = (torch.rand(n, generator=gen) * (size - side)).long()
    rows = torch.arange(size)
    mask = ((rows[None, :, None] >= y0[:, None, None]) & (rows[None, :, None] < (y0 + side)[:, None, None]) &
            (rows[None, None, :] >= x0[:, None, None]) & (rows[None, None, :] < (x0 + side)[:, None, None]))
    return out.masked_fill((mask & erase[:, None, None])[:, None], 0.0)


def centre_crop(x, size: int):
    """Centre size x size crop of a (..., H, W) tensor or array."""
    o = (x.shape[-1] - size) // 2
    return x[..., o:o + size, o:o + size]


def mirrored(x):
    """Left-right mirror image of a (..., H, W) array or tensor (torch has no negative-step slices)."""
    return x[..., ::-1] if isinstance(x, np.ndarray) else torch.flip(x, dims=[-1])


def ten_crops(x, size: int) -> list:
    """4 corners + centre, and their mirror images (the test-time protocol of the 73 % FER2013 results);
    works on torch tensors and NumPy arrays alike."""
    d = x.shape[-1] - size
    crops = [x[..., :size, :size], x[..., :size, d:], x[..., d:, :size], x[..., d:, d:], centre_crop(x, size)]
    return crops + [mirrored(c) for c in crops]


TTA = ("none", "flip", "tencrop")


def tta_views(x, size: int, tta: str = "none") -> list:
    """The crops a prediction averages over: the centre crop (none), it and its mirror image (flip: twice the
    cost), or the ten crops (ten times)."""
    if tta == "tencrop":
        return ten_crops(x, size)
    centre = centre_crop(x, size)
    if tta == "flip":
        return [centre, mirrored(centre)]
    if tta != "none":
        raise EmoDetError(f"unknown TTA {tta!r}; choose from {', '.join(TTA)}")
    return [centre]


@torch.no_grad()
def predict_logits(model, faces: np.ndarray, prep: Preprocess, tta: str = "none", batch: int = 512) -> np.ndarray:
    """Logits (N, C) for uint8 faces (N, 48, 48), averaged over the views of `tta` (see tta_views)."""
    model.eval()
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(faces), batch):
        x = normalise(torch.from_numpy(faces[i:i + batch])[:, None], prep).to(device)
        views = tta_views(x, prep.input_size, tta)
        out.append(torch.stack([model(v) for v in views]).mean(0).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean()) if len(labels) else float("nan")


def class_balance_weights(labels: np.ndarray, power: float) -> torch.Tensor | None:
    """Per-face sampling weights (class count) ** -power, or None for a plain shuffle (power 0). Macro metrics
    (per-class AP, the mAP of a detector built on this backbone) weigh disgust, 1.5 % of FER2013 Training, as
    much as happy, 25 %; power 1 shows every class equally often, 0.5 halfway (in log terms)."""
    if not power:
        return None
    counts = np.bincount(labels).astype(np.float64)  # every label indexed here counts itself, so none is 0
    return torch.from_numpy(counts[labels] ** -power)


def epoch_order(n: int, weights: torch.Tensor | None, gen: torch.Generator) -> torch.Tensor:
    """Indices of one epoch's faces: a permutation, or n draws with replacement by `weights`."""
    if weights is None:
        return torch.randperm(n, generator=gen)
    return torch.multinomial(weights, n, replacement=True, generator=gen)


def train_one_epoch(model, opt, sched, x_all, targets, prep, args, gen, epoch, weights=None) -> float:
    device = next(model.parameters()).device
    amp = training_autocast(device, args.bf16)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    model.train()
    n = len(x_all)
    rank, world = process_share()
    # every process draws the same epoch order (same seed) and takes every world-th face of it, as
    # DistributedSampler does; the global batch stays args.batch, split evenly between the processes
    order = epoch_order(n, weights, gen)
    order = order[:len(order) - len(order) % world][rank::world]  # equal shares: every process takes as many steps
    batch = args.batch // world
    total, seen = 0.0, 0
    bar = tracked(range(0, len(order) - batch + 1, batch), desc=f"epoch {epoch}", unit="batch", leave=False,
                  disable=args.quiet or rank > 0)
    sizes = args.train_sizes or [prep.input_size]
    for i in bar:
        idx = order[i:i + batch]
        size = sizes[int(torch.randint(len(sizes), (1,), generator=gen))] if len(sizes) > 1 else sizes[0]
        # augmentation draws from one CPU generator (reproducible on any device); the batch then moves over
        x = augment(normalise(x_all[idx][:, None], prep), prep, gen, size).to(
            device, non_blocking=True).contiguous(memory_format=torch.channels_last)
        t = targets[idx].to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp or torch.bfloat16, enabled=amp is not None):
            logits = model(x)
        logp = F.log_softmax(logits.float(), 1)
        loss = -(t * logp).sum(1).mean()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()  # a no-op scale unless float16 (older GPUs), whose small gradients underflow
        scaler.step(opt)
        scaler.update()
        sched.step()
        total += float(loss.detach()) * len(idx)
        seen += len(idx)
        bar.set_postfix(loss=f"{total / seen:.3f}")
    return total / max(seen, 1)


def process_share() -> tuple[int, int]:
    """(rank, world size) under torchrun (DistributedDataParallel), (0, 1) in a plain run."""
    import torch.distributed as dist
    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


def start_processes(device: str) -> str:
    """Join torchrun's process group when started by it (WORLD_SIZE > 1): NCCL between GPUs, gloo between CPU
    processes; each process drives the GPU of its LOCAL_RANK. Returns this process's device."""
    import os
    import torch.distributed as dist
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return device
    dist.init_process_group("gloo" if device == "cpu" else "nccl")
    return device if device == "cpu" else os.environ.get("LOCAL_RANK", "0")


def training_autocast(device: torch.device, bf16: bool):
    """The autocast type for training on `device`: on a CPU bfloat16 when --bf16 and the CPU runs it natively
    (emulated, it is several times slower than float32); on a GPU bfloat16 where supported, else float16 (with a
    gradient scaler); None for full float32."""
    from scripts.device import autocast_dtype
    if device.type == "cpu":
        return autocast_dtype("cpu") if bf16 else None
    return autocast_dtype(str(device.index))


def smoothed(labels: np.ndarray, n_classes: int, eps: float) -> torch.Tensor:
    t = torch.full((len(labels), n_classes), eps / n_classes)
    t[torch.arange(len(labels)), torch.from_numpy(labels)] += 1 - eps
    return t


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scripts.torch_classifier", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=FER2013_TABLE, help="HDF5 table")
    p.add_argument("--soft", type=Path, default=None, help="FER+ soft-target CSV for the train split (optional)")
    p.add_argument("--model", default="fervgg-m", help="architecture name (scripts/torch_models.py)")
    p.add_argument("--classes", type=int, choices=(7, 8), default=7)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05, help="peak SGD learning rate (one-cycle, cosine decay)")
    p.add_argument("--wd", type=float, default=5e-4)
    p.add_argument("--smoothing", type=float, default=0.1, help="label smoothing")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--balance", type=float, default=0.0, metavar="POWER",
                   help="draw training faces with probability (class count) ** -POWER (0: plain shuffle; 1: every "
                        "class equally often), for macro metrics such as a detector's mAP")
    p.add_argument("--train-sizes", type=int, nargs="+", default=None, metavar="PX",
                   help="train at these input sizes, one drawn per batch (the face crop rendered at several "
                        "resolutions; fully convolutional models only, e.g. v8n-cls for a detector backbone that "
                        "sees faces of many sizes); evaluation stays at the model's input size")
    p.add_argument("--init", type=Path, default=None, help="start from this checkpoint's weights (fine-tuning)")
    p.add_argument("--extra", nargs="+", default=[], metavar="H5[:REPEAT]",
                   help="more training faces: the train split of these tables, each listed REPEAT times")
    p.add_argument("--extra-even", type=int, default=0, metavar="N",
                   help="list each class of the --extra tables up to N times more, towards their largest class")
    p.add_argument("--select-extra", type=Path, default=None, metavar="H5",
                   help="select on the mean of PublicTest top-1 and this table's val macro recall (classes with "
                        "--min-support faces), e.g. real face photos")
    p.add_argument("--min-support", type=int, default=50)
    p.add_argument("--device", default="auto", help=DEVICE_HELP)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: all cores)")
    p.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True,
                   help="bfloat16 autocast where the CPU or GPU runs it natively (about 2x faster on CPUs with AVX-512 "
                        "BF16 or AMX; other CPUs train in float32)")
    p.add_argument("--out", type=Path, default=RUNS_DIR / "torch" / "fer2013", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    torch.manual_seed(args.seed)
    if args.threads:
        torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(args.seed)
    x_train, y_train = training_mix(args.data, args.extra, args.extra_even)
    x_val, y_val = load_split(args.data, "val")
    names = label_names(args.data, args.classes)
    n_classes = len(names)
    model, prep = build_model(args.model, n_classes)
    if args.init:
        model.load_state_dict(torch.load(args.init, weights_only=False, map_location="cpu")["model"])
    if args.select_extra:
        x_sel, y_sel = load_split(args.select_extra, "val")
        sel_classes = supported_classes(args.select_extra, args.min_support)
    device = start_processes(resolve_device(args.device))
    rank, world = process_share()
    args.device = describe(device) + (f" x {world} processes" if world > 1 else "")
    if rank == 0:
        print(f"device {args.device}", flush=True)
    model = model.to(torch_device(device), memory_format=torch.channels_last)
    net = model
    if world > 1:  # gradients averaged across processes on each step; `model` stays the plain module we save
        from torch.nn.parallel import DistributedDataParallel
        net = DistributedDataParallel(model, device_ids=None if device == "cpu" else [torch_device(device)])
    targets = smoothed(y_train, n_classes, args.smoothing)
    if args.soft:
        soft = torch.from_numpy(load_soft_targets(args.soft, len(y_train)))
        targets = (1 - args.smoothing) * soft + args.smoothing / n_classes
    steps = args.epochs * ((len(x_train) // world) // (args.batch // world))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=args.wd)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15,
                                                anneal_strategy="cos", div_factor=20, final_div_factor=200)
    args.out.mkdir(parents=True, exist_ok=True)
    start, best, history = 0, -1.0, []
    if args.resume and (args.out / "last.pt").exists():
        ck = torch.load(args.out / "last.pt", weights_only=False, map_location=torch_device(device))
        model.load_state_dict(ck["model"]), opt.load_state_dict(ck["optimizer"]), sched.load_state_dict(ck["scheduler"])
        start, best, history = ck["epoch"] + 1, ck["best_val"], ck["history"]
        gen.set_state(ck["rng"])
        print(f"resumed at epoch {start} (best PublicTest {best:.4f})")
    x_t = torch.from_numpy(x_train)
    if device != "cpu":
        x_t = x_t.pin_memory()  # page-locked: each batch's copy to the GPU overlaps the next step
    weights = class_balance_weights(y_train, args.balance)
    t0 = time.perf_counter()
    for epoch in range(start, args.epochs):
        e0 = time.perf_counter()
        loss = train_one_epoch(net, opt, sched, x_t, targets, prep, args, gen, epoch, weights)
        if rank > 0:  # validation, checkpoints and logs are the first process's
            continue
        sel = (predict_logits(model, x_sel, prep), y_sel, sel_classes) if args.select_extra else ()
        scored = selection_score(predict_logits(model, x_val, prep), y_val, *sel)
        val, top1 = scored.pop("score"), scored["val_top1"]
        history.append(dict(epoch=epoch, loss=loss, **scored, seconds=time.perf_counter() - e0))
        ck = dict(model={k: v.detach().cpu() for k, v in model.state_dict().items()}, optimizer=opt.state_dict(),
                  scheduler=sched.state_dict(), epoch=epoch,
                  args={k: str(v) for k, v in vars(args).items()}, best_val=max(best, val), history=history,
                  rng=gen.get_state(), arch=args.model, classes=list(names),
                  preprocess=prep.__dict__)
        torch.save(ck, args.out / "last.pt.tmp")
        (args.out / "last.pt.tmp").replace(args.out / "last.pt")
        if val > best:
            best = val
            torch.save(ck, args.out / "best.pt")
        extra = f"  {args.select_extra} val macro recall {history[-1]['extra_macro_recall']:.4f}" \
            if args.select_extra else ""
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss:.4f}  PublicTest top-1 {top1:.4f}{extra}  selection "
              f"{val:.4f} (best {best:.4f})  ({history[-1]['seconds']:.0f} s)", flush=True)
    if world > 1:
        import torch.distributed as dist
        dist.barrier()
        dist.destroy_process_group()
    if rank > 0:
        return 0
    (args.out / "history.json").write_text(json.dumps(history, indent=1))
    minutes = sum(h["seconds"] for h in history) / 60
    what = "selection score (PublicTest top-1 + val macro recall) / 2" if args.select_extra else "PublicTest top-1"
    print(f"trained {len(history)} epochs in {minutes:.1f} min; best {what} {best:.4f}; "
          f"weights {args.out / 'best.pt'}  (this run: {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
