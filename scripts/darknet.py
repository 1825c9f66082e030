"""The one module that drives a Darknet binary (Debian's pjreddie 2018 build by default; AlexeyAB/Hank.ai via
DARKNET=/path). Darknet exits 0 on many failures (shared/ENGINES.md), so every call here checks that the files
it should have written exist, and never trusts the exit code alone."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np

from converters.darknet_files import layer_shapes, parse_cfg, read_weights, render_template
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


def render_cfg(template: str, out: Path, **values) -> Path:
    """cfg/<template>.cfg.in filled in and written to `out` (checked by our own parser first)."""
    text = render_template((CFG_DIR / f"{template}.cfg.in").read_text(), **values)
    parse_cfg(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return out


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
    want = sum(l["floats"] for l in layer_shapes(parse_cfg(cfg.read_text()))[:n_layers])
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
