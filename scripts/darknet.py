"""The one module that drives a Darknet binary (Debian's pjreddie 2018 build by default; AlexeyAB/Hank.ai via
DARKNET=/path). Darknet exits 0 on many failures (shared/ENGINES.md), so every call here checks that the files
it should have written exist, and never trusts the exit code alone."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from converters.darknet_files import data_file_text, read_data_file
from scripts.darknet_model import (expected_floats, layer_shapes, parse_cfg, read_weights, render_template,
                                   write_weights)
from converters.errors import EmoDetError
from converters.settings import CFG_DIR

INSTALL_HINT = "install it with `apt-get install -y darknet` or point DARKNET=/path/to/darknet at your build"


def darknet_binary() -> Path:
    """$DARKNET, else `darknet` on PATH; a one-line error with the install hint otherwise."""
    given = os.environ.get("DARKNET")
    found = Path(given) if given else (Path(p) if (p := shutil.which("darknet")) else None)
    if found is None or not found.exists():
        raise EmoDetError(f"Darknet binary not found ({given or 'darknet not on PATH'}); {INSTALL_HINT}")
    return found


def run_darknet(args: list[str], cwd: Path, log: Path, timeout: float | None = None) -> str:
    """Run Darknet headless with its output in `log`; returns the output (callers check the files it wrote)."""
    cmd = [str(darknet_binary()), *map(str, args)]
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        f.write("$ " + " ".join(cmd) + "\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    text = log.read_text(errors="replace")
    if proc.returncode != 0:
        tail = " / ".join(text.strip().splitlines()[-3:])
        raise EmoDetError(f"darknet {args[0]} exited {proc.returncode}: {tail} (log: {log})")
    return text


def _cpu_times() -> tuple[float, float]:
    """(idle, total) jiffies of all CPUs since boot, from /proc/stat."""
    values = [float(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return values[3] + values[4], sum(values)  # idle + iowait


def free_cores(window: float = 0.5) -> int:
    """Cores idle right now, measured over `window` seconds (the load average lags a minute behind: right after
    a training ends it still counts that training)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        idle0, total0 = _cpu_times()
        time.sleep(window)
        idle1, total1 = _cpu_times()
        return int(cores * (idle1 - idle0) / max(total1 - total0, 1e-9) + 0.25)
    except (OSError, ValueError, IndexError):
        return max(0, int(cores - os.getloadavg()[0] + 0.5))


def side_by_side(*jobs) -> tuple[list, bool]:
    """Run independent Darknet jobs (zero-argument callables) at the same time when there is a free core for
    each - Debian's Darknet uses one thread, so a second core would idle otherwise - else one after the other.
    Returns (results in job order, whether they ran concurrently). The first failure is raised."""
    from concurrent.futures import ThreadPoolExecutor
    together = len(jobs) > 1 and free_cores() >= len(jobs)
    if not together:
        return [job() for job in jobs], False
    with ThreadPoolExecutor(len(jobs)) as pool:  # threads suffice: each job waits on its own darknet process
        futures = [pool.submit(job) for job in jobs]
        return [f.result() for f in futures], True


def render_cfg(template: str, out: Path, **values) -> Path:
    """cfg/<template>.cfg.in filled in and written to `out` (checked by our own parser first)."""
    text = render_template((CFG_DIR / f"{template}.cfg.in").read_text(), **values)
    parse_cfg(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


CFG_PROBLEMS = ("Unused field", "Couldn't find activation", "Type not recognized", "not recognized")


def cfg_problems(cfg: Path) -> list[str]:
    """What the chosen binary's parser complains about in `cfg` (pjreddie Darknet ignores YOLOv4 fields such
    as route groups or scale_x_y with a warning and would train a different network): empty when it parses."""
    probe = cfg.parent / ".cfg-probe"
    probe.mkdir(parents=True, exist_ok=True)
    write_weights(probe / "empty.weights", [])
    text = run_darknet(["partial", cfg.resolve(), (probe / "empty.weights").resolve(), (probe / "out.weights").resolve(),
                        0], probe, probe / "parse.log")
    shutil.rmtree(probe, ignore_errors=True)
    # the binary prefixes each layer's line with its index: drop it so one problem is reported once
    return sorted({re.sub(r"^\d+\s+", "", line.strip()) for line in text.splitlines()
                   if any(p in line for p in CFG_PROBLEMS)})


def require_parsable(cfg: Path, alternative: str = "CFG=v3-tiny") -> None:
    problems = cfg_problems(cfg)
    if problems:
        raise EmoDetError(f"{darknet_binary()} cannot parse {cfg.name} ({'; '.join(problems[:3])}); use a "
                          f"newer Darknet (AlexeyAB/Hank.ai) via DARKNET=/path/to/darknet, or {alternative}")


def shared_layers(cls_cfg: Path, det_cfg: Path) -> int:
    """How many leading layers the two cfgs share exactly (type, stored floats, output channels)."""
    a = layer_shapes(parse_cfg(Path(cls_cfg).read_text()))
    b = layer_shapes(parse_cfg(Path(det_cfg).read_text()))
    n = 0
    for x, y in zip(a, b):
        if (x["type"], x["floats"], x["c"]) != (y["type"], y["floats"], y["c"]):
            break
        n += 1
    return n


def partial(cfg: Path, weights: Path, out: Path, n_layers: int, det_cfg: Path | None = None) -> Path:
    """`darknet partial`: keep layers [0, n_layers) (seen reset to 0). With `det_cfg`, refuse a cut that would
    hand the detector layers whose shapes differ from its own."""
    if det_cfg is not None:
        common = shared_layers(cfg, det_cfg)
        if n_layers > common:
            raise EmoDetError(f"cannot cut {n_layers} layers of {cfg} for {det_cfg}: only the first {common} layers "
                              f"have the same shapes")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)
    run_darknet(["partial", cfg.resolve(), weights.resolve(), out.resolve(), n_layers], out.parent,
                out.parent / f"{out.name}.log")
    if not out.exists():
        raise EmoDetError(f"darknet partial wrote no {out} (see {out.parent / f'{out.name}.log'})")
    header, floats = read_weights(out)
    want = expected_floats(parse_cfg(cfg.read_text()), n_layers)
    if len(floats) != want or header["seen"] != 0:
        raise EmoDetError(f"{out}: {len(floats)} floats (expected {want}), seen {header['seen']} (expected 0)")
    return out


def kmeans_anchors(wh: np.ndarray, k: int = 6, iterations: int = 50, seed: int = 0) -> np.ndarray:
    """k box sizes (w, h) clustering `wh` by IoU distance, sorted by area (YOLOv2's anchor recipe)."""
    rng = np.random.default_rng(seed)
    centres = wh[rng.choice(len(wh), size=min(k, len(wh)), replace=False)].astype(float)
    for _ in range(iterations):
        inter = np.minimum(wh[:, None, 0], centres[None, :, 0]) * np.minimum(wh[:, None, 1], centres[None, :, 1])
        iou = inter / (wh[:, None].prod(2) + centres[None].prod(2) - inter)
        assign = iou.argmax(1)
        new = np.array([wh[assign == j].mean(0) if (assign == j).any() else centres[j] for j in range(len(centres))])
        if np.allclose(new, centres):
            break
        centres = new
    return centres[np.argsort(centres.prod(1))]


def data_file_copy(src: Path, dst: Path, **override) -> Path:
    """A run-local copy of a converter-written .data file (backup/results moved into the run folder)."""
    entries = {**read_data_file(src), **{k: str(v) for k, v in override.items()}}
    for key in ("backup", "results"):
        if key in entries:
            Path(entries[key]).mkdir(parents=True, exist_ok=True)  # Darknet saves nothing / segfaults without
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_text(data_file_text(entries))
    return dst


def _batch1_copy(cfg: Path) -> Path:
    """Inference copy with batch=1 and subdivisions=1 (`classifier csv`/`valid` misbehave with larger batches)."""
    lines = []
    for line in cfg.read_text().splitlines():
        key = line.split("=", 1)[0].strip()
        lines.append(f"{key}=1" if key in ("batch", "subdivisions") else line)
    out = cfg.with_name(cfg.stem + "-batch1.cfg")
    out.write_text("\n".join(lines) + "\n")
    return out


def list_length(path: Path) -> int:
    return sum(1 for line in Path(path).read_text().splitlines() if line.strip())


def _template(kind: str, model: str, templates: dict[str, str]) -> str:
    """cfg/ template name of a Darknet model name, or a one-line error listing the known names."""
    if model not in templates:
        raise EmoDetError(f"unknown Darknet {kind} {model!r}; use {', '.join(templates)}")
    return templates[model]


def _max_batches(epochs: float, n_train: int, batch: int) -> int:
    """Weight updates for `epochs` passes over `n_train` images (at least one)."""
    return max(1, int(round(epochs * n_train / batch)))


CLASSIFIER_TEMPLATES = {"small": "emotion-classifier", "emotion-classifier": "emotion-classifier",
                        "csdarknet53-omega": "csdarknet53-omega"}


def train_classifier(data: Path, run: Path, epochs: float = 10, batch: int = 32, size: int = 48,
                     learning_rate: float = 0.1, timeout: float | None = None,
                     model: str = "small") -> tuple[Path, Path]:
    """Train a Darknet classifier (`small`: cfg/emotion-classifier.cfg.in, shares yolov3-tiny's first 9 layers;
    `csdarknet53-omega`: CSPDarknet53 for newer builds) on a converter-written classifier set
    (`darknet/<size>/`); resumes from the run's `.backup` when present. Returns (cfg, final weights)."""
    template = _template("classifier", model, CLASSIFIER_TEMPLATES)
    data = Path(data)
    entries = read_data_file(data / "emotion-classifier.data")
    n_train = list_length(entries["train"])
    if n_train == 0:
        raise EmoDetError(f"{entries['train']}: empty training list")
    max_batches = _max_batches(epochs, n_train, batch)
    cfg = render_cfg(template, run / f"{template}.cfg", batch=batch, size=size,
                     max_crop=int(size * 1.15), learning_rate=learning_rate, max_batches=max_batches,
                     classes=int(entries["classes"]))
    require_parsable(cfg, "MODEL=small")
    data_file = data_file_copy(data / "emotion-classifier.data", run / "classifier.data", backup=run / "backup")
    return cfg, _train("classifier", data_file, cfg, run, None, f"{cfg.stem}.weights", timeout)


def _train(kind: str, data_file: Path, cfg: Path, run: Path, init: Path | None, final_name: str,
           timeout: float | None) -> Path:
    """`darknet <kind> train`, resuming from the run's `.backup` when one exists (else from `init`); returns the
    final weights, which must exist (Darknet exits 0 even when it saved nothing)."""
    backup = run / "backup" / f"{cfg.stem}.backup"
    start = backup if backup.exists() else init
    args = [kind, "train", data_file.resolve(), cfg.resolve()] + ([Path(start).resolve()] if start else [])
    log = run / f"train-{kind}.log"
    run_darknet(args, run, log, timeout)
    final = run / "backup" / final_name
    if not final.exists():
        raise EmoDetError(f"Darknet {kind} training wrote no {final} (see {log})")
    return final


def validate_classifier(cfg: Path, weights: Path, data_file: Path, run: Path) -> dict:
    """`darknet classifier valid`: the running top-1/top-k it prints, parsed from its last line."""
    text = run_darknet(["classifier", "valid", data_file.resolve(), _batch1_copy(cfg).resolve(), weights.resolve()],
                       run, run / "valid-classifier.log")
    hits = re.findall(r"(\d+): top 1: ([0-9.]+), top (\d+): ([0-9.]+)", text)
    if not hits:
        last = text.strip().splitlines()[-1] if text.strip() else ""
        raise EmoDetError(f"darknet classifier valid printed no accuracy: {last!r} (see {run / 'valid-classifier.log'})")
    n, top1, k, topk = hits[-1]
    return dict(n=int(n) + 1, top1=float(top1), k=int(k), topk=float(topk))


def yolo_anchors(train_list: Path, size: int) -> str:
    """Anchor string for the cfg: k-means of the training boxes at the network input size."""
    from converters.yolo_format import read_yolo_rows
    rows = [read_yolo_rows(label) for image in Path(train_list).read_text().split()
            if (label := Path(image).with_suffix(".txt")).exists()]
    wh = np.concatenate(rows)[:, 3:5] * size if rows else np.zeros((0, 2))
    if len(wh) < 6:
        raise EmoDetError(f"{train_list}: fewer than 6 labelled boxes; cannot fit anchors")
    anchors = kmeans_anchors(np.array(wh), 6)
    return ", ".join(f"{max(1, round(w))},{max(1, round(h))}" for w, h in anchors)


def check_detection_set(data_file: Path, n_classes: int) -> None:
    """Darknet silently trains on blank images or corrupt ids; refuse a set with missing labels or bad class ids."""
    from converters.yolo_format import read_yolo_rows
    entries = read_data_file(data_file)
    bad = []
    for image in Path(entries["train"]).read_text().split():
        label = Path(image).with_suffix(".txt")
        if not Path(image).exists() or not label.exists():
            bad.append(f"{image}: image or label missing")
            continue
        try:
            ids = read_yolo_rows(label)[:, 0]
        except EmoDetError as exc:
            bad.append(str(exc))
            continue
        wrong = ids[(ids < 0) | (ids >= n_classes) | (ids != np.round(ids))]
        if len(wrong):
            bad.append(f"{label}: class id {wrong[0]:g} outside 0..{n_classes - 1}")
    if bad:
        raise EmoDetError(f"{len(bad)} bad training label(s) for Darknet, first: {bad[0]}")


DETECTOR_TEMPLATES = {"v3-tiny": "yolov3-tiny", "yolov3-tiny": "yolov3-tiny", "v4-tiny": "yolov4-tiny",
                      "yolov4-tiny": "yolov4-tiny"}


def train_detector(data: Path, run: Path, init: Path | None = None, epochs: float = 10, size: int = 160,
                   batch: int = 16, subdivisions: int = 1, learning_rate: float = 0.001,
                   timeout: float | None = None, model: str = "v3-tiny") -> tuple[Path, Path]:
    """Train yolov3-tiny (or v4-tiny on newer builds) on a converter-written YOLO set (`yolo/emotion.data`),
    optionally from a partial backbone (`init`, seen=0); resumes from the run's `.backup`.
    Returns (cfg, final weights)."""
    template = _template("detector", model, DETECTOR_TEMPLATES)
    data = Path(data)
    entries = read_data_file(data / "emotion.data")
    classes = int(entries["classes"])
    check_detection_set(data / "emotion.data", classes)
    max_batches = _max_batches(epochs, list_length(entries["train"]), batch)
    cfg = render_cfg(template, run / f"{template}-emotion.cfg", batch=batch, subdivisions=subdivisions, size=size,
                     learning_rate=learning_rate, burn_in=min(1000, max(1, max_batches // 10)),
                     max_batches=max_batches, steps=f"{int(max_batches * 0.8)},{int(max_batches * 0.9)}",
                     filters=(classes + 5) * 3, classes=classes, anchors=yolo_anchors(Path(entries["train"]), size))
    require_parsable(cfg)
    data_file = data_file_copy(data / "emotion.data", run / "emotion.data", backup=run / "backup", results=run / "results")
    return cfg, _train("detector", data_file, cfg, run, init, f"{cfg.stem}_final.weights", timeout)


def validate_detector(cfg: Path, weights: Path, data_file: Path, run: Path) -> Path:
    """`darknet detector valid` -> results/comp4_det_test_<class>.txt (pjreddie has no `detector map`; our eval
    scores these files)."""
    results = Path(read_data_file(data_file)["results"])
    results.mkdir(parents=True, exist_ok=True)
    for old in results.glob("comp4_det_test_*.txt"):
        old.unlink()
    run_darknet(["detector", "valid", data_file.resolve(), _batch1_copy(cfg).resolve(), weights.resolve()], run,
                run / "valid-detector.log")
    if not list(results.glob("comp4_det_test_*.txt")):
        raise EmoDetError(f"darknet detector valid wrote no result files in {results} (see {run / 'valid-detector.log'})")
    return results


def training_curve(log: Path, out_csv: Path, out_png: Path | None = None) -> int:
    """Darknet's per-iteration lines (`N: loss, avg avg, rate rate, s seconds, n images`, classifier lines carry
    an epoch after N) -> CSV (+ loss-curve PNG). Returns the number of iterations found."""
    pattern = re.compile(r"^\s*(\d+)(?:, ([0-9.]+))?: ([-0-9.naif]+), ([-0-9.naif]+) avg, ([0-9.e-]+) rate, "
                         r"([0-9.]+) seconds, (\d+) images", re.M)
    rows = pattern.findall(Path(log).read_text(errors="replace"))
    lines = ["iteration,epoch,loss,avg_loss,rate,seconds,images"] + [",".join(r) for r in rows]
    out_csv.write_text("\n".join(lines) + "\n")
    if out_png is not None and rows:
        from eval.plots import plot_lines
        it = np.array([int(r[0]) for r in rows])
        plot_lines({"loss": (it, np.array([float(r[2]) for r in rows])),
                    "avg loss": (it, np.array([float(r[3]) for r in rows]))}, out_png,
                   f"Darknet training: {Path(log).name}", "iteration", "loss")
    return len(rows)
