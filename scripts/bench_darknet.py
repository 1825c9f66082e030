"""Benchmark part `darknet`: detector training speed of the two Darknet engines side by side in one run -
AlexeyAB (built by `make darknet`: AVX + OpenMP on every core) against Debian's pjreddie 2018 build (one thread) -
for yolov3-tiny and yolov4-tiny at 160 and 256 px on the synthetic sample (batch 8, random=0), one engine right
after the other for each network and size. Images/s = batch / median seconds per iteration as each engine logs it,
warm-up iterations dropped. pjreddie cannot parse yolov4-tiny (route groups): that row says so.
"""
from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import numpy as np

from converters.errors import EmoDetError
from converters.settings import DARKNET_BUILD_DIR, RUNS_DIR

PJREDDIE = Path("/usr/bin/darknet")
BATCH = 8
WARMUP = 2


@contextlib.contextmanager
def using_binary(binary: Path):
    """Darknet calls inside run on `binary` (scripts.darknet reads $DARKNET on every call)."""
    old = os.environ.get("DARKNET")
    os.environ["DARKNET"] = str(binary)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("DARKNET", None)
        else:
            os.environ["DARKNET"] = old


def engines() -> dict[str, Path]:
    """The engines to compare that are here: name -> binary."""
    found = {}
    if (DARKNET_BUILD_DIR / "darknet").exists():
        found["alexeyab"] = DARKNET_BUILD_DIR / "darknet"
    pj = shutil.which("darknet") or (str(PJREDDIE) if PJREDDIE.exists() else None)
    if pj:
        found["pjreddie"] = Path(pj)
    return found


def images_per_second(log_text: str) -> tuple[float, int]:
    """(batch / median logged seconds per iteration after the warm-up, iterations counted)."""
    from scripts.darknet import training_rows
    seconds = [float(r["seconds"]) for r in training_rows(log_text)][WARMUP:]
    if not seconds:
        raise EmoDetError("no training iterations after the warm-up in the log")
    return BATCH / float(np.median(seconds)), len(seconds)


def _sample_yolo(root: Path) -> Path:
    from converters.convert import convert_affectnet
    from converters.pipeline import ConvertOptions
    from converters.synthetic import generate_sample
    if not (root / "data" / "yolo" / "emotion.data").exists():
        generate_sample(root / "sample", 240, 60, 0, progress=False)
        convert_affectnet(root / "sample", ["training", "validation"], root / "data",
                          ConvertOptions(sizes=(48,), formats=("yolo",), progress=False))
    return root / "data" / "yolo"


def bench_darknet_speed(iterations: int = 14, models=("v3-tiny", "v4-tiny"), sizes=(160, 256)) -> dict:
    from scripts import darknet
    found = engines()
    if not found:
        return dict(skipped="no Darknet binary (make darknet, or apt-get install -y darknet)")
    root = RUNS_DIR / "bench" / "darknet-speed"
    yolo = _sample_yolo(root)
    n_train = darknet.list_length(yolo / "train.txt")
    rows = []
    for model in models:
        for size in sizes:
            row = dict(model=model, size=size)
            for name, binary in found.items():
                run = root / f"{name}-{model}-{size}"
                shutil.rmtree(run, ignore_errors=True)
                with using_binary(binary):
                    row[f"{name}_engine"] = darknet.engine()["label"]
                    try:
                        darknet.train_detector(yolo, run, None, iterations * BATCH / n_train, size, BATCH,
                                               model=model, map_chart=False, burn_in=1)
                    except EmoDetError as exc:
                        row[name] = None
                        row[f"{name}_why"] = str(exc).split(";")[0][:120]
                        print(f"darknet speed: {name} {model} {size}: {row[f'{name}_why']}")
                        continue
                ips, n = images_per_second((run / "train-detector.log").read_text(errors="replace"))
                row[name], row[f"{name}_iterations"] = round(ips, 2), n
                print(f"darknet speed: {name} {model} {size} px: {ips:.1f} images/s ({n} iterations)")
            if row.get("alexeyab") and row.get("pjreddie"):
                row["ratio"] = round(row["alexeyab"] / row["pjreddie"], 2)
            rows.append(row)
    return dict(rows=rows, batch=BATCH, iterations=iterations, cores=len(os.sched_getaffinity(0)),
                engines={k: str(v) for k, v in found.items()}, markdown=speed_markdown(rows, found))


def speed_markdown(rows: list[dict], found: dict) -> str:
    from scripts import darknet
    labels = {}
    for name, binary in found.items():
        labels[name] = darknet.engine(binary)["label"]
    lines = ["| network | input | AlexeyAB images/s | pjreddie images/s | AlexeyAB / pjreddie |", "|---|---:|---:|---:|---:|"]
    for r in rows:
        def cell(name):
            return f"{r[name]:.1f}" if r.get(name) else (f"cannot run: {r.get(f'{name}_why', 'not built')}"
                                                          if name in found else "not here")
        lines.append(f"| {r['model']} | {r['size']} px | {cell('alexeyab')} | {cell('pjreddie')} | "
                     f"{r['ratio']:.2f}x |" if r.get("ratio") else
                     f"| {r['model']} | {r['size']} px | {cell('alexeyab')} | {cell('pjreddie')} | - |")
    lines += ["", "Engines: " + "; ".join(f"{k}: {v}" for k, v in labels.items()) + ".",
              f"Batch {BATCH}, random=0, from scratch, the same synthetic 240-image training set; images/s = batch / "
              f"median logged seconds per iteration after {WARMUP} warm-up iterations; each network and size runs on "
              "one engine right after the other. Command: `python -m scripts.bench --parts darknet`."]
    return "\n".join(lines)
