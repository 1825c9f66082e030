"""The one module that drives a Darknet binary (Debian's pjreddie 2018 build by default; AlexeyAB/Hank.ai via
DARKNET=/path). Darknet exits 0 on many failures (shared/ENGINES.md), so every call here checks that the files
it should have written exist, and never trusts the exit code alone."""
from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np

from converters.darknet_files import data_file_text, read_data_file
from scripts.darknet_model import (expand_backbones, expected_floats, layer_shapes, parse_cfg, read_weights,
                                   render_template, write_weights)
from converters.errors import EmoDetError
from converters.parallel import usable_cores
from converters.settings import CFG_DIR, DARKNET_BUILD_DIR

INSTALL_HINT = ("run `make darknet` (AlexeyAB, from ../shared/engines or DARKNET_SRC=<clone>), install pjreddie's "
                "with `apt-get install -y darknet`, or point DARKNET=/path/to/darknet at your build")


def darknet_binary() -> Path:
    """$DARKNET, else the AlexeyAB build of `make darknet` (build/darknet/), else `darknet` on PATH; a one-line
    error with the install hint otherwise."""
    given = os.environ.get("DARKNET")
    built = DARKNET_BUILD_DIR / "darknet"
    if given:
        found = Path(given)
    elif built.exists():
        found = built
    else:
        found = Path(p) if (p := shutil.which("darknet")) else None
    if found is None or not found.exists():
        raise EmoDetError(f"Darknet binary not found ({given or 'no build/darknet, no darknet on PATH'}); {INSTALL_HINT}")
    return found


def _flavour_of_binary(data: bytes) -> str:
    """Which Darknet a binary is, from strings only its family has (pjreddie 2018 has no `detector map`;
    Hank.ai's fork names itself and dropped `classifier`)."""
    if b"Hank.ai" in data or b"hank.ai" in data:
        return "hank"
    if b"mean average precision" in data:
        return "alexeyab"
    return "pjreddie"


@functools.lru_cache(maxsize=8)
def _engine(path: str, mtime: float) -> dict:
    binary = Path(path)
    record = binary.parent / "ENGINE.json"
    data = binary.read_bytes()
    if record.exists():
        info = json.loads(record.read_text())
    else:
        info = dict(flavour=_flavour_of_binary(data), commit="unknown")
        if info["flavour"] == "pjreddie":
            try:  # Debian's package says which 2018 snapshot it is
                out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "darknet"], capture_output=True,
                                     text=True, timeout=10)
                if out.returncode == 0 and binary.resolve() == Path("/usr/bin/darknet").resolve():
                    info["commit"] = out.stdout.strip()
            except (OSError, subprocess.TimeoutExpired):
                pass
    flags = info.get("flags", {})
    info["gpu"] = bool(flags.get("GPU")) if flags else b"libcudart" in data  # a CUDA build links the runtime
    extras = "+".join(k for k in ("AVX", "OPENMP", "GPU", "CUDNN", "OPENCV") if flags.get(k)) or \
        ("one thread" if info["flavour"] == "pjreddie" else "build flags unknown")
    # builds recorded before fixes had names carried only the top-k one
    extras += "".join(f" +{p.get('name', 'topk fix')}" for p in info.get("patches", []) if p.get("applied"))
    name = {"alexeyab": "AlexeyAB Darknet", "hank": "Hank.ai Darknet", "pjreddie": "pjreddie Darknet"}[info["flavour"]]
    return dict(info, path=str(binary), label=f"{name} {info['commit']} ({extras}; {binary})")


def engine(binary: Path | None = None) -> dict:
    """What Darknet `binary` (default: the one in use) is: flavour (alexeyab, hank, pjreddie), commit or
    package version, build flags, and `label`, the one line printed and recorded with every Darknet result."""
    binary = Path(binary) if binary else darknet_binary()
    return _engine(str(binary.resolve()), binary.stat().st_mtime)


def has_map(binary: Path | None = None) -> bool:
    """Whether the engine has `detector map`, `-map` and `-topk` (AlexeyAB and Hank.ai builds)."""
    return engine(binary)["flavour"] in ("alexeyab", "hank")


def gpu_flags(device: str | None) -> list[str]:
    """Darknet's `-gpus 0,1` for a device spelling (scripts.device) on a CUDA build; nothing on the CPU. A GPU asked
    of a CPU build is one line naming the rebuild (an AlexeyAB CPU build would silently train on the CPU)."""
    if device in (None, "", "cpu"):
        return []
    from scripts.device import resolve_device
    resolved = resolve_device(device)
    if resolved == "cpu":
        return []
    if not engine()["gpu"]:
        if device.strip().lower() == "auto":  # auto: a GPU when the engine can use one
            return []
        raise EmoDetError(f"{engine()['label']} is a CPU build; for DEVICE={device} build the CUDA one: "
                          f"make darknet GPU=1 CUDNN=1")
    return ["-gpus", resolved]


def run_darknet(args: list[str], cwd: Path, log: Path, timeout: float | None = None,
                finished: Path | None = None, stdin_text: str | None = None) -> str:
    """Run Darknet headless with its output in `log` (first lines: the command and the engine); returns the
    output (callers check the files it wrote). `finished`: the file a successful run writes last; when the run
    wrote it and then crashed on its way out, that is noted and not an error (AlexeyAB's `classifier train -topk`
    segfaults freeing its networks after saving the final weights)."""
    # line-buffered: a crash must not take the last printed numbers with it (Darknet's stdout is a file here)
    cmd = (["stdbuf", "-oL"] if shutil.which("stdbuf") else []) + [str(darknet_binary()), *map(str, args)]
    started = time.time()
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("w") as f:
        f.write("$ " + " ".join(cmd) + "\n# engine: " + engine()["label"] + "\n")
        f.flush()
        proc = subprocess.run(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT, timeout=timeout,
                              input=stdin_text, text=stdin_text is not None,
                              **({} if stdin_text is not None else {"stdin": subprocess.DEVNULL}))
    text = log.read_text(errors="replace")
    if proc.returncode != 0 and finished is not None and finished.exists() and finished.stat().st_mtime >= started - 1 \
            and f"Saving weights to {finished}" in text.replace(str(finished.resolve()), str(finished)):
        note = f"# darknet exited {proc.returncode} after writing {finished.name}: the run finished; its exit is ignored"
        with log.open("a") as f:
            f.write("\n" + note + "\n")
        return text + "\n" + note
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
    cores = usable_cores()
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


def template_text(template: str) -> str:
    """cfg/<template>.cfg.in with its `@backbone` lines expanded."""
    def read(name):
        path = CFG_DIR / f"{name}.cfg.in"
        if not path.exists():
            raise EmoDetError(f"no Darknet template {path}")
        return path.read_text()
    return expand_backbones(read(template), read)


def render_cfg(template: str, out: Path, **values) -> Path:
    """cfg/<template>.cfg.in filled in and written to `out` (checked by our own parser first)."""
    text = render_template(template_text(template), **values)
    parse_cfg(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


CFG_PROBLEMS = ("Unused field", "Couldn't find activation", "Type not recognized", "not recognized")


def _parse_log(cfg: Path) -> str:
    """What the binary prints while loading `cfg` (a `partial` of 0 layers from an empty weights file)."""
    probe = cfg.parent / f".cfg-probe-{cfg.stem}"
    probe.mkdir(parents=True, exist_ok=True)
    write_weights(probe / "empty.weights", [])
    text = run_darknet(["partial", cfg.resolve(), (probe / "empty.weights").resolve(), (probe / "out.weights").resolve(),
                        0], probe, probe / "parse.log")
    shutil.rmtree(probe, ignore_errors=True)
    return text


def cfg_problems(cfg: Path) -> list[str]:
    """What the chosen binary's parser complains about in `cfg` (pjreddie Darknet ignores YOLOv4 fields such
    as route groups or scale_x_y with a warning and would train a different network): empty when it parses."""
    # the binary prefixes each layer's line with its index: drop it so one problem is reported once
    return sorted({re.sub(r"^\d+\s+", "", line.strip()) for line in _parse_log(cfg).splitlines()
                   if any(p in line for p in CFG_PROBLEMS)})


ENGINE_LAYER = re.compile(r"^\s*(\d+)\s+([a-z_]+).*->\s*(\d+)\s*x\s*(\d+)\s*x\s*(\d+)", re.M)


def engine_layer_shapes(cfg: Path) -> dict[int, tuple[str, int, int, int]]:
    """Per layer index, (type, h, w, c) of the output as the binary itself builds the network from `cfg`
    (layers it prints without a shape, such as [yolo], are absent): the check on our cfg reader."""
    return {int(i): (kind, int(h), int(w), int(c)) for i, kind, h, w, c in ENGINE_LAYER.findall(_parse_log(cfg))}


def require_parsable(cfg: Path, alternative: str = "CFG=v3-tiny") -> None:
    problems = cfg_problems(cfg)
    if problems:
        raise EmoDetError(f"{darknet_binary()} cannot parse {cfg.name} ({'; '.join(problems[:3])}); build AlexeyAB's "
                          f"with `make darknet` (or DARKNET=/path/to/a newer build), or use {alternative}")


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
                        "v4-tiny": "yolov4-tiny-classifier", "yolov4-tiny-classifier": "yolov4-tiny-classifier",
                        "csdarknet53-omega": "csdarknet53-omega"}
DETECTOR_TEMPLATES = {"v3-tiny": "yolov3-tiny", "yolov3-tiny": "yolov3-tiny", "v4-tiny": "yolov4-tiny",
                      "yolov4-tiny": "yolov4-tiny", "v4": "yolov4", "yolov4": "yolov4"}
# detector template -> (the classifier template that pretrains its first layers, how many layers `partial` keeps)
BACKBONES = {"yolov3-tiny": ("emotion-classifier", 9), "yolov4-tiny": ("yolov4-tiny-classifier", 29),
             "yolov4": ("csdarknet53-omega", 105)}


def backbone_of(detector: str) -> tuple[str, int]:
    """(classifier model, partial layer count) that starts Darknet detector `detector` (v3-tiny, v4-tiny, v4)."""
    return BACKBONES[_template("detector", detector, DETECTOR_TEMPLATES)]


def classifier_size(model: str) -> int:
    """Default input of a Darknet classifier: 48 px for the small one (FER-sized faces), else 64 px (the YOLO
    backbones downsample five times, so their input is a multiple of 32)."""
    return 48 if _template("classifier", model, CLASSIFIER_TEMPLATES) == "emotion-classifier" else 64


def train_classifier(data: Path, run: Path, epochs: float = 10, batch: int = 32, size: int | None = None,
                     learning_rate: float = 0.1, timeout: float | None = None,
                     model: str = "small", topk: bool | None = None, device: str | None = None) -> tuple[Path, Path]:
    """Train a Darknet classifier (`small`: cfg/emotion-classifier.cfg.in, shares yolov3-tiny's first 9 layers;
    `v4-tiny`: yolov4-tiny's first 29 layers; `csdarknet53-omega`: CSPDarknet53, yolov4's first 105; the last two
    need AlexeyAB/Hank.ai) on a converter-written classifier set (`darknet/<size>/`); resumes from the run's last
    saved weights. `topk` (default: when the engine has it) adds `-topk`: top-k on the validation list every two
    epochs, in the log and the training curve. Returns (cfg, final weights)."""
    template = _template("classifier", model, CLASSIFIER_TEMPLATES)
    size = size or classifier_size(model)
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
    flags = (["-topk", "-dont_show"] if (has_map() if topk is None else topk) else []) + gpu_flags(device)
    return cfg, _train("classifier", data_file, cfg, run, None, timeout, flags)


def _resume_point(backup: Path, stem: str) -> Path | None:
    """The newest weights a run saved mid-training: pjreddie's `<stem>.backup`, AlexeyAB's `<stem>_last.weights`."""
    found = [p for p in (backup / f"{stem}.backup", backup / f"{stem}_last.weights") if p.exists()]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def final_weights(backup: Path, stem: str) -> Path | None:
    """The weights a finished training saved: `<stem>_final` (AlexeyAB; pjreddie's detector) or `<stem>`
    (pjreddie's classifier); None when there are none."""
    return next((w for w in (backup / f"{stem}_final.weights", backup / f"{stem}.weights") if w.exists()), None)


def _train(kind: str, data_file: Path, cfg: Path, run: Path, init: Path | None, timeout: float | None,
           flags: list[str] = ()) -> Path:
    """`darknet <kind> train`, resuming from the run's last saved weights when there are some (else from `init`);
    returns the final weights, which must exist (Darknet exits 0 even when it saved nothing): `<stem>_final`
    (AlexeyAB; pjreddie's detector) or `<stem>` (pjreddie's classifier)."""
    start = _resume_point(run / "backup", cfg.stem) or init
    args = [kind, "train", data_file.resolve(), cfg.resolve()] + ([Path(start).resolve()] if start else []) + list(flags)
    log = run / f"train-{kind}.log"
    for old in (run / "backup" / f"{cfg.stem}_final.weights", run / "backup" / f"{cfg.stem}.weights"):
        old.unlink(missing_ok=True)
    run_darknet(args, run, log, timeout, finished=(run / "backup" / f"{cfg.stem}_final.weights").resolve())
    final = final_weights(run / "backup", cfg.stem)
    if final is not None:
        return final
    raise EmoDetError(f"Darknet {kind} training wrote no {cfg.stem}_final.weights or {cfg.stem}.weights in "
                      f"{run / 'backup'} (see {log})")


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


def yolo_anchors(train_list: Path, size: int, k: int = 6) -> str:
    """Anchor string for the cfg: k-means (k boxes) of the training boxes at the network input size."""
    from converters.yolo_format import read_yolo_rows
    rows = [read_yolo_rows(label) for image in Path(train_list).read_text().split()
            if (label := Path(image).with_suffix(".txt")).exists()]
    wh = np.concatenate(rows)[:, 3:5] * size if rows else np.zeros((0, 2))
    if len(wh) < k:
        raise EmoDetError(f"{train_list}: fewer than {k} labelled boxes; cannot fit anchors")
    anchors = kmeans_anchors(np.array(wh), k)
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


ANCHOR_COUNT = {"yolov4": 9}  # three per [yolo] head; the tiny models have two heads


def shape_check_cfg(detector: str, out: Path, size: int = 160, classes: int = 7) -> Path:
    """A detector cfg with placeholder anchors and schedule, only for checking layer shapes before `partial`."""
    template = _template("detector", detector, DETECTOR_TEMPLATES)
    anchors = ", ".join(f"{10 * k},{10 * k}" for k in range(1, ANCHOR_COUNT.get(template, 6) + 1))
    return render_cfg(template, out, batch=1, subdivisions=1, size=size, learning_rate=0.001, burn_in=1,
                      max_batches=1, steps="1,1", filters=(classes + 5) * 3, classes=classes, anchors=anchors)


def train_detector(data: Path, run: Path, init: Path | None = None, epochs: float = 10, size: int = 160,
                   batch: int = 16, subdivisions: int = 1, learning_rate: float = 0.001,
                   timeout: float | None = None, model: str = "v3-tiny", map_chart: bool | None = None,
                   burn_in: int | None = None, device: str | None = None) -> tuple[Path, Path]:
    """Train yolov3-tiny (or v4-tiny / v4 on AlexeyAB/Hank.ai builds) on a converter-written YOLO set
    (`yolo/emotion.data`), optionally from a partial backbone (`init`, seen=0); resumes from the run's last saved
    weights. `map_chart` (default: when the engine has it) adds `-map -dont_show`: mAP@0.5 on the validation list
    every 4 epochs (at least 100 iterations) and at the end, in the log, the training curve and `_best.weights`.
    Returns (cfg, final weights)."""
    template = _template("detector", model, DETECTOR_TEMPLATES)
    data = Path(data)
    entries = read_data_file(data / "emotion.data")
    classes = int(entries["classes"])
    check_detection_set(data / "emotion.data", classes)
    max_batches = _max_batches(epochs, list_length(entries["train"]), batch)
    k = ANCHOR_COUNT.get(template, 6)
    cfg = render_cfg(template, run / f"{template}-emotion.cfg", batch=batch, subdivisions=subdivisions, size=size,
                     learning_rate=learning_rate,
                     burn_in=burn_in if burn_in is not None else min(1000, max(1, max_batches // 10)),
                     max_batches=max_batches, steps=f"{int(max_batches * 0.8)},{int(max_batches * 0.9)}",
                     filters=(classes + 5) * 3, classes=classes,
                     anchors=yolo_anchors(Path(entries["train"]), size, k))
    require_parsable(cfg)
    data_file = data_file_copy(data / "emotion.data", run / "emotion.data", backup=run / "backup", results=run / "results")
    flags = (["-map", "-dont_show"] if (has_map() if map_chart is None else map_chart) else []) + gpu_flags(device)
    return cfg, _train("detector", data_file, cfg, run, init, timeout, flags)


def validate_detector(cfg: Path, weights: Path, data_file: Path, run: Path) -> Path:
    """`darknet detector valid` -> results/comp4_det_test_<class>.txt, which our eval scores (pjreddie has no
    `detector map`). Its detections are not `detector map`'s: conf > 0.001 and NMS 0.6 against 0.005 and 0.45,
    and boxes clipped to the image (eval.detection_io.darknet_map_view reproduces the first two)."""
    results = Path(read_data_file(data_file)["results"])
    results.mkdir(parents=True, exist_ok=True)
    for old in results.glob("comp4_det_test_*.txt"):
        old.unlink()
    run_darknet(["detector", "valid", data_file.resolve(), _batch1_copy(cfg).resolve(), weights.resolve()], run,
                run / "valid-detector.log")
    if not list(results.glob("comp4_det_test_*.txt")):
        raise EmoDetError(f"darknet detector valid wrote no result files in {results} (see {run / 'valid-detector.log'})")
    return results


def detector_test(cfg: Path, weights: Path, data_file: Path, run: Path, images: list[Path] | None = None,
                  thresh: float = 0.005) -> Path:
    """AlexeyAB `detector test` over `images` (default: the .data file's validation list) -> run/predictions/
    result.json: the boxes `detector map` scores (conf > 0.005, NMS 0.45, the engine's own order, not clipped to
    the image), so our evaluator and the engine score the very same detections."""
    from eval.detection_io import DARKNET_JSON
    if not has_map():
        raise EmoDetError(f"{engine()['label']} writes no JSON from `detector test`; use validate_detector")
    images = [Path(p) for p in (images or Path(read_data_file(data_file)["valid"]).read_text().split())]
    long = [p for p in images if len(str(p.resolve())) > 250]
    if long:
        raise EmoDetError(f"{long[0]}: Darknet reads image paths of at most 255 characters")
    out = run / "predictions"
    out.mkdir(parents=True, exist_ok=True)
    (out / DARKNET_JSON).unlink(missing_ok=True)
    scratch = run / ".test-cwd"  # it draws every image into ./predictions.jpg with the fonts of ./data/labels
    scratch.mkdir(parents=True, exist_ok=True)
    fonts = darknet_binary().resolve().parent / "data"
    if fonts.is_dir() and not (scratch / "data").exists():
        (scratch / "data").symlink_to(fonts)
    run_darknet(["detector", "test", data_file.resolve(), _batch1_copy(cfg).resolve(), weights.resolve(), "-thresh",
                 thresh, "-dont_show", "-ext_output", "-out", (out / DARKNET_JSON).resolve()], scratch,
                run / "test-detector.log", stdin_text="".join(f"{p.resolve()}\n" for p in images))
    shutil.rmtree(scratch, ignore_errors=True)
    if not (out / DARKNET_JSON).exists():
        raise EmoDetError(f"darknet detector test wrote no {out / DARKNET_JSON} (see {run / 'test-detector.log'})")
    return out


def detector_map(cfg: Path, weights: Path, data_file: Path, run: Path, points: int = 0, iou: float = 0.5) -> dict:
    """`darknet detector map` (AlexeyAB/Hank.ai) on the .data file's validation list: its mAP, P/R/F1, TP/FP/FN at
    conf 0.25 and per-class AP, parsed (eval/darknet_map.py), with the engine that computed them."""
    from eval.darknet_map import parse_darknet_map
    if not has_map():
        raise EmoDetError(f"{engine()['label']} has no `detector map`; build AlexeyAB's with `make darknet`, or "
                          f"score `detector valid` output with eval/detection.py")
    log = run / "map-detector.log"
    args = ["detector", "map", data_file.resolve(), _batch1_copy(cfg).resolve(), weights.resolve(), "-points", points,
            "-iou_thresh", iou]
    metrics = parse_darknet_map(run_darknet(args, run, log))
    return dict(metrics, engine=engine()["label"], log=str(log))


# searched, not matched: Darknet's stderr notes can share a line with it
CURVE = re.compile(r"(?<![\d.])(\d+)(?:, ([0-9.]+))?: ([-0-9.naif]+), ([-0-9.naif]+) avg(?: loss)?, ([0-9.e-]+) rate, "
                   r"([0-9.]+) seconds, (\d+) images")
# what -map / -topk print after an evaluation (AlexeyAB), attached to the iteration line before it
CURVE_MAP = re.compile(r"mean_average_precision \(mAP@[0-9.]+\) = ([0-9.]+)")
CURVE_TOPK = re.compile(r"accuracy top\d+ = ([0-9.]+)")
CURVE_COLUMNS = "iteration,epoch,loss,avg_loss,rate,seconds,images,map50,topk"


def training_rows(text: str) -> list[dict]:
    """Per iteration of a Darknet training log: its numbers, and the validation mAP@0.5 (`-map`, printed after
    its iteration's line) or top-k (`-topk`, printed before it) measured at that iteration, when one was."""
    rows: list[dict] = []
    pending_topk = None
    for line in text.replace("\r", "\n").splitlines():
        if m := CURVE.search(line):
            rows.append(dict(zip(CURVE_COLUMNS.split(",")[:7], m.groups())))
            if pending_topk is not None:
                rows[-1]["topk"], pending_topk = pending_topk, None
        elif rows and (m := CURVE_MAP.search(line)):
            rows[-1]["map50"] = m.group(1)
        elif m := CURVE_TOPK.search(line):
            pending_topk = m.group(1)
    if pending_topk is not None and rows:
        rows[-1]["topk"] = pending_topk
    return rows


def training_curve(log: Path, out_csv: Path, out_png: Path | None = None) -> int:
    """A Darknet training log -> CSV (iteration, epoch for classifiers, loss, avg loss, rate, seconds, images,
    validation mAP@0.5 or top-k where measured) and a PNG of the loss with mAP/top-k on a second axis.
    Returns the number of iterations found."""
    rows = training_rows(Path(log).read_text(errors="replace"))
    columns = CURVE_COLUMNS.split(",")
    out_csv.write_text("\n".join([CURVE_COLUMNS] + [",".join(r.get(c) or "" for c in columns) for r in rows]) + "\n")
    if out_png is not None and rows:
        from eval.plots import plot_lines
        it = np.array([int(r["iteration"]) for r in rows])
        right = {}
        for key, name in (("map50", "validation mAP@0.5"), ("topk", "validation top-k")):
            marked = [(int(r["iteration"]), float(r[key])) for r in rows if r.get(key)]
            if marked:
                right[name] = tuple(np.array(v) for v in zip(*marked))
        plot_lines({"loss": (it, np.array([float(r["loss"]) for r in rows])),
                    "avg loss": (it, np.array([float(r["avg_loss"]) for r in rows]))}, out_png,
                   f"Darknet training: {Path(log).name}", "iteration", "loss", right=right or None,
                   right_label="accuracy")
    return len(rows)
