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
from converters.parallel import usable_cores
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
    return dict(rows=rows, batch=BATCH, iterations=iterations, cores=usable_cores(),
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


def _subset_classifier_set(data: Path, out: Path, n_valid: int) -> Path:
    """A copy of a Darknet classifier set's .data file whose validation list is its first `n_valid` faces."""
    from converters.darknet_files import data_file_text, read_data_file
    entries = read_data_file(data / "emotion-classifier.data")
    valid = Path(entries["valid"]).read_text().split()
    step = max(1, len(valid) // n_valid)  # spread over the list, which is sorted by row
    out.mkdir(parents=True, exist_ok=True)
    (out / "valid.list").write_text("\n".join(valid[::step][:n_valid]) + "\n")
    (out / "emotion-classifier.data").write_text(data_file_text(dict(entries, valid=str(out / "valid.list"))))
    return out


def bench_csdarknet53(iterations: int = 30, batch: int = 16, size: int = 64, n_valid: int = 500,
                      det_iterations: int = 8, det_size: int = 128) -> dict:
    """csdarknet53-omega for real: a short classifier training on the FER2013 Darknet set (`make convert-fer2013`),
    `classifier valid` on PublicTest faces, `partial` of its 105 backbone layers into yolov4, a few yolov4
    iterations (with -map) on the synthetic detection set; both networks' layer shapes as the engine builds them
    checked against our cfg reader."""
    import time
    from converters.settings import DATA_DIR
    from scripts import darknet
    from scripts.darknet_model import layer_shapes, parse_cfg
    fer = DATA_DIR / "fer2013" / "darknet" / "48"
    if not (fer / "emotion-classifier.data").exists():
        return dict(skipped=f"no FER2013 Darknet set at {fer} (make convert-fer2013)")
    if "alexeyab" not in engines():
        return dict(skipped="AlexeyAB Darknet is not built (make darknet): csdarknet53-omega needs mish")
    root = RUNS_DIR / "bench" / "darknet-csp"
    shutil.rmtree(root / "cls", ignore_errors=True)
    shutil.rmtree(root / "det", ignore_errors=True)
    subset = _subset_classifier_set(fer, root / "fer2013-set", n_valid)
    n_train = darknet.list_length(fer / "train.list")
    out: dict = dict(iterations=iterations, batch=batch, size=size, n_train=n_train)
    with using_binary(engines()["alexeyab"]):
        out["engine"] = darknet.engine()["label"]
        t0 = time.perf_counter()
        cfg, weights = darknet.train_classifier(subset, root / "cls", iterations * batch / n_train, batch, size,
                                                learning_rate=0.05, model="csdarknet53-omega")
        out["classifier_seconds"] = round(time.perf_counter() - t0, 1)
        out["classifier_valid"] = darknet.validate_classifier(cfg, weights, root / "cls" / "classifier.data",
                                                              root / "cls")
        yolo = _sample_yolo(RUNS_DIR / "bench" / "darknet-speed")
        probe = darknet.shape_check_cfg("v4", root / "yolov4-shape-check.cfg", det_size)
        conv = darknet.partial(cfg, weights, root / "csdarknet53-omega.conv.105", 105, det_cfg=probe)
        t0 = time.perf_counter()
        det_cfg, det_w = darknet.train_detector(yolo, root / "det", conv, det_iterations * 4 / darknet.list_length(
            yolo / "train.txt"), det_size, 4, model="v4", burn_in=1)
        out["detector_seconds"] = round(time.perf_counter() - t0, 1)
        rows = darknet.training_rows((root / "det" / "train-detector.log").read_text(errors="replace"))
        out["detector_iterations"] = len(rows)
        out["detector_map50_at_end"] = next((float(r["map50"]) for r in reversed(rows) if r.get("map50")), None)
        checked = {}
        for name, c in (("csdarknet53-omega", cfg), ("yolov4", det_cfg)):
            theirs = darknet.engine_layer_shapes(c)
            ours = layer_shapes(parse_cfg(c.read_text()))
            wrong = [i for i, (_, h, w, ch) in theirs.items() if (ours[i]["h"], ours[i]["w"], ours[i]["c"]) != (h, w, ch)]
            if wrong:
                raise EmoDetError(f"{c}: our cfg reader disagrees with the engine on layers {wrong[:5]}")
            checked[name] = dict(layers=len(ours), compared=len(theirs))
        out["shapes_checked"] = checked
    v = out["classifier_valid"]
    out["markdown"] = (
        f"csdarknet53-omega ({size} px, batch {batch}) trained for {iterations} iterations ({iterations * batch} "
        f"faces, {iterations * batch / n_train:.3f} epochs of the {n_train} FER2013 Training faces) in "
        f"{out['classifier_seconds'] / 60:.1f} min: `classifier valid` top-1 {v['top1']:.3f}, top-{v['k']} "
        f"{v['topk']:.3f} on {v['n']} PublicTest faces (chance 0.25 for the majority class; a training this short "
        f"shows the path runs, not what the network can learn). `partial` kept its 105 backbone layers "
        f"(seen 0) for yolov4 ({det_size} px), which trained {out['detector_iterations']} iterations with `-map` "
        f"in {out['detector_seconds']:.0f} s (mAP@0.5 at the end {out['detector_map50_at_end']}). Layer shapes as "
        f"the engine built them agree with our cfg reader: "
        + ", ".join(f"{k} {c['compared']} of {c['layers']} layers" for k, c in checked.items())
        + f". Engine: {out['engine']}. Command: `python -m scripts.bench --parts darknet-csp`.")
    return out
