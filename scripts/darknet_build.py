"""`make darknet`: build AlexeyAB's Darknet (the engine of the published AffectNet recipe: `detector map`, `-map`,
`-topk`, YOLOv4 layers, OpenMP) from a source tarball or a clone into build/darknet/, CPU with AVX and OpenMP by
default. The build records what it is (ENGINE.json beside the binary), so every Darknet result can name its engine.
scripts/darknet.py prefers this binary over a `darknet` on PATH; DARKNET=/path still selects any binary."""
from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import tarfile
import time
from pathlib import Path

from converters.errors import EmoDetError, run_cli
from converters.parallel import usable_cores
from converters.settings import DARKNET_BUILD_DIR, engines_root

ARCHIVE_GLOB = "darknet-alexeyab-*.tar.gz"
CLONE_HINT = ("point DARKNET_SRC at a clone of AlexeyAB/darknet (git clone https://github.com/AlexeyAB/darknet) "
              "or at its source tarball")
RECORD = "ENGINE.json"


def default_source() -> Path | None:
    """The newest AlexeyAB source tarball beside the project (../shared/engines or $EMODET_ENGINES), if any."""
    found = sorted(engines_root().glob(ARCHIVE_GLOB))
    return found[-1] if found else None


def source_commit(src: Path) -> str:
    """The commit a source names: `darknet-alexeyab-<commit>.tar.gz`, a clone's HEAD, else 'unknown'."""
    if m := re.search(r"darknet-alexeyab-([0-9a-f]{7,40})", Path(src).name):
        return m.group(1)
    head = Path(src) / ".git"
    if head.exists():
        try:
            return subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True,
                                  text=True, check=True).stdout.strip()
        except (OSError, subprocess.CalledProcessError):
            pass
    return "unknown"


def _unpack(src: Path, tree: Path) -> None:
    """The source tree (the folder that holds Darknet's Makefile) copied or extracted into `tree`."""
    if src.is_dir():
        if not (src / "Makefile").exists():
            raise EmoDetError(f"{src}: no Makefile; {CLONE_HINT}")
        shutil.copytree(src, tree, ignore=shutil.ignore_patterns(".git", "obj", "*.o", "darknet", "*.so"))
        return
    if not tarfile.is_tarfile(src):
        raise EmoDetError(f"{src}: not a folder or a tar archive; {CLONE_HINT}")
    scratch = tree.with_name(tree.name + ".unpack")
    shutil.rmtree(scratch, ignore_errors=True)
    with tarfile.open(src) as archive:
        archive.extractall(scratch, filter="data")  # 'data' refuses absolute paths, '..' and device files
    tops = [p.parent for p in scratch.rglob("Makefile") if (p.parent / "src").is_dir()]
    if not tops:
        raise EmoDetError(f"{src}: no Darknet source tree (Makefile beside src/) inside; {CLONE_HINT}")
    shutil.move(str(min(tops, key=lambda p: len(p.parts))), tree)
    shutil.rmtree(scratch, ignore_errors=True)


# Fixes applied to the unpacked source before `make`, each recorded in ENGINE.json: (name, file, text, replacement,
# why); the names go into the engine's label.
# A source where a text is not found (another commit, already fixed) builds as it is, and the record says so.
PATCHES = [
    ("topk fix", "src/classifier.c",
     "        set_batch_network(&net, old_batch);\n    }\n    float topk_result",
     "        set_batch_network(&net, old_batch);\n"
     "        existing_net->workspace = net.workspace;  /* EmoDet build fix: see scripts/darknet_build.py */\n"
     "    }\n    float topk_result",
     "classifier train -topk: the top-k check resizes a copy of the training network, which frees the workspace the "
     "training network still points to; the next iteration then crashes (seen at iteration 100). The copy's new "
     "workspace is handed back."),
    ("batch-norm shift fix", "src/batchnorm_layer.c",
     "void backward_batchnorm_layer(const layer l, network_state state)\n{\n    backward_scale_cpu(",
     "void backward_bias(float *bias_updates, float *delta, int batch, int n, int size);"
     "  /* EmoDet build fix: see scripts/darknet_build.py */\n"
     "void backward_batchnorm_layer(const layer l, network_state state)\n{\n"
     "    backward_bias(l.bias_updates, l.delta, l.batch, l.out_c, l.out_w*l.out_h);\n    backward_scale_cpu(",
     "CPU training never learned the batch-norm shifts: the CPU backward_batchnorm_layer leaves out the bias "
     "gradient that the GPU one (backward_bias_gpu) and pjreddie's both compute, so every layer's beta stayed at its "
     "start. One update on one image, the same weights, against pjreddie: every weight and scale change agreed to "
     "1e-6 and the shifts did not change at all; with the fix they agree too."),
    ("gradient reset fix", "src/network.c",
     "        if(l.delta && state.train && l.train){\n            scal_cpu(l.outputs * l.batch, 0, l.delta, 1);",
     "        if(l.delta && state.train){  /* EmoDet build fix: see scripts/darknet_build.py */\n"
     "            scal_cpu(l.outputs * l.batch, 0, l.delta, 1);",
     "CPU training summed every gradient since the start in the layers without their own `train` flag (route, "
     "upsample, shortcut, avgpool, ...): the CPU forward pass clears a layer's gradient only when that flag is set, "
     "the GPU one (forward_network_gpu) clears every layer's. Their gradients grew each iteration, so classifiers "
     "diverged at rates pjreddie's build trains at, and yolov4-tiny (nine route layers) never learned. Five updates "
     "on one image from the same weights, momentum 0: the losses and every weight now agree with pjreddie's build "
     "(to 3e-5; before, the third loss was 0.0039 against 0.0779)."),
]


def apply_patches(tree: Path) -> list[dict]:
    """PATCHES applied to the source in `tree`: what each did (applied, or why not)."""
    done = []
    for fix, name, old, new, why in PATCHES:
        path = tree / name
        text = path.read_text(errors="replace") if path.exists() else ""
        applied = text.count(old) == 1
        if applied:
            path.write_text(text.replace(old, new))
        done.append(dict(name=fix, file=name, applied=applied, why=why))
    return done


# AlexeyAB's Makefile compiles with -Ofast, which lets gcc assume no NaN or inf ever occurs and so removes the
# engine's own NaN/inf guards: yolov4-tiny (CIoU loss) then turns NaN within 40 iterations here, and the loss never
# recovers. Keeping those checks costs no measurable speed (about 1 s per iteration either way, 160 px, batch 8).
OPTS = "-Ofast -fno-finite-math-only"


def make_flags(gpu: bool = False, cudnn: bool = False, opencv: bool = False) -> dict[str, object]:
    """Darknet Makefile switches: AVX and OpenMP always (the CPU path), CUDA/cuDNN/OpenCV on request, and OPTS."""
    return dict(AVX=1, OPENMP=1, GPU=int(gpu), CUDNN=int(cudnn), OPENCV=int(opencv), OPTS=OPTS)


def build(src: Path | None = None, out: Path = DARKNET_BUILD_DIR, gpu: bool = False, cudnn: bool = False,
          opencv: bool = False, jobs: int | None = None, log=print) -> Path:
    """Build AlexeyAB Darknet from `src` (tarball or clone; default: the tarball beside the project) into `out`.
    Returns the binary; raises one line when there is no source or the build wrote no binary."""
    src = Path(src) if src else default_source()
    if src is None:
        raise EmoDetError(f"no AlexeyAB Darknet source in {engines_root()} ({ARCHIVE_GLOB}); {CLONE_HINT}")
    if not src.exists():
        raise EmoDetError(f"{src}: no such file or folder; {CLONE_HINT}")
    flags = make_flags(gpu, cudnn, opencv)
    out = Path(out)
    tree = out.with_name(out.name + ".tree")
    shutil.rmtree(tree, ignore_errors=True)
    tree.parent.mkdir(parents=True, exist_ok=True)
    _unpack(src.resolve(), tree)
    patches = apply_patches(tree)
    jobs = jobs or usable_cores()
    cmd = ["make", f"-j{jobs}", *(f"{k}={v}" for k, v in flags.items())]
    log(f"[darknet] building AlexeyAB Darknet {source_commit(src)} ({' '.join(cmd[2:7])}, NaN checks kept) from {src}")
    t0 = time.perf_counter()
    build_log = tree / "build.log"
    with build_log.open("w") as f:
        proc = subprocess.run(cmd, cwd=tree, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    binary = tree / "darknet"
    if proc.returncode != 0 or not binary.exists():
        tail = " / ".join(build_log.read_text(errors="replace").strip().splitlines()[-2:])
        raise EmoDetError(f"Darknet build failed (make exited {proc.returncode}): {tail[-300:]} (log: {build_log})")
    record = dict(flavour="alexeyab", commit=source_commit(src), source=str(src), flags=flags, patches=patches,
                  built=time.strftime("%Y-%m-%d %H:%M:%S"), seconds=round(time.perf_counter() - t0, 1))
    (tree / RECORD).write_text(json.dumps(record, indent=1) + "\n")
    # swap the finished tree in whole, so a failed build never leaves a half-built engine in use
    shutil.rmtree(out, ignore_errors=True)
    tree.rename(out)
    log(f"[darknet] built {out / 'darknet'} in {record['seconds']:.0f} s")
    return out / "darknet"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="emodet build-darknet", description=__doc__)
    p.add_argument("--src", type=Path, default=None,
                   help=f"AlexeyAB source: a tarball or a clone (default: {engines_root() / ARCHIVE_GLOB})")
    p.add_argument("--out", type=Path, default=DARKNET_BUILD_DIR, help="where the engine goes (git-ignored)")
    p.add_argument("--gpu", action="store_true", help="CUDA build (needs the CUDA toolkit)")
    p.add_argument("--cudnn", action="store_true", help="with cuDNN (needs --gpu and libcudnn)")
    p.add_argument("--opencv", action="store_true", help="with OpenCV (needs libopencv-dev; draws chart.png)")
    p.add_argument("--if-available", action="store_true",
                   help="set-up: build only when a source is there and no engine is built yet; else say why")
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.if_available:
        if (args.out / "darknet").exists():
            return 0
        if args.src is None and default_source() is None:
            print(f"[darknet] no AlexeyAB source in {engines_root()}; Darknet runs use pjreddie's if installed. "
                  f"For the recipe's engine: make darknet DARKNET_SRC=<clone of AlexeyAB/darknet or its tarball>")
            return 0
    build(args.src, args.out, args.gpu, args.cudnn, args.opencv)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
