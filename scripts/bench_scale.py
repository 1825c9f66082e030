"""Benchmark part `convert-scale`: the AffectNet converter at AffectNet's scale and photo sizes.

On one synthetic AffectNet-format set (`python -m converters.synthetic --affectnet-sizes`: long side 425 +- 350 px,
one face a photo), side by side on the same rows and cores:
- the compute ceiling: N processes that only decode each photo at reduced size (the converter's DCT scale), crop
  and resize its face to 48 px; nothing written, no validation;
- the same with only the face's part of each photo decoded, as the converter does (converters/jpeg_region.py), and
  that + the converter's three files a photo written plainly (no checks, no atomic writes);
- the converter (`python -m converters.convert --sizes 48 --formats crops yolo`), as a user runs it;
and their ratios, for N = 1 and 2 (how it scales with cores). Where the time goes is read from the machine's own
CPU accounts (/proc/stat: user, kernel, I/O wait) around each full-size run: the gap between the converter and the
ceilings splits into our Python (user) and the kernel creating files (system). The converter's peak memory (its
main process's VmHWM) at 5,000 and at all rows says whether memory grows with the rows; a run killed with SIGKILL
half-way and rerun must give the clean run's files, byte for byte.
"""
from __future__ import annotations

import csv
import hashlib
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2

from converters.settings import PROJECT_ROOT, RUNS_DIR

SET = RUNS_DIR / "affectnet-scale"
SIZE = 48


def generate(rows: int, workers: int) -> Path:
    """The synthetic set of `rows` photos (made once, reused while its CSV has that many rows)."""
    csv_path = SET / "training.csv"
    if not (csv_path.exists() and sum(1 for _ in open(csv_path)) - 1 == rows):
        subprocess.run([sys.executable, "-m", "converters.synthetic", "--out", str(SET), "--train-images", str(rows),
                        "--val-images", "0", "--affectnet-sizes", "--seed", "7", "--workers", str(workers)],
                       check=True, cwd=PROJECT_ROOT)
    return SET


def subset(root: Path, rows: int) -> Path:
    """A dataset folder holding the first `rows` rows of `root`'s training.csv over the same photos."""
    sub = root.parent / f"{root.name}-{rows}"
    sub.mkdir(exist_ok=True)
    link = sub / "Manually_Annotated_Images"
    if not link.exists():
        link.symlink_to((root / "Manually_Annotated_Images").resolve())
    with open(root / "training.csv") as f:
        lines = [next(f) for _ in range(rows + 1)]
    (sub / "training.csv").write_text("".join(lines))
    return sub


def _ceiling_job(job: tuple[str, tuple[float, float, float, float], str | None, bool]) -> int:
    from converters import jpeg_region
    from converters.crops import box_crop, decode_factor, decoded_shape, pixel_box, reduced_flag
    from converters.jpeg_header import HEAD_BYTES, read_jpeg_header
    from converters.pipeline import png_bytes
    path, box, out, region = job
    factor = decode_factor([box], SIZE)
    image = None
    if region:  # only the face's part, as the converter decodes it (the size it needs from the JPEG's header)
        with open(path, "rb") as f:
            data = f.read()
        header = read_jpeg_header(data[:HEAD_BYTES], b"")
        shape = decoded_shape(header.width, header.height, factor)
        image = jpeg_region.region_grey(data, factor, shape, pixel_box(box, factor, shape))
    if image is None:  # the whole photo; also where the converter cannot decode part of it, as the converter does
        image = cv2.imread(path, reduced_flag(factor) | cv2.IMREAD_IGNORE_ORIENTATION)
    crop = box_crop(image, box, factor, image.shape, SIZE)
    if out is not None:  # + the files the converter makes per photo, written plainly: PNG crop, linked JPEG, label
        with open(f"{out}.png", "wb") as f:
            f.write(png_bytes(crop))
        os.link(path, f"{out}.jpg")
        with open(f"{out}.txt", "w") as f:
            f.write(f"0 {box[0]} {box[1]} {box[2]} {box[3]}\n")
    return int(crop.size)


CPU_KINDS = {"user": (0, 1), "system": (2, 5, 6), "iowait": (4,), "steal": (7,)}  # /proc/stat cpu columns


def cpu_seconds() -> dict[str, float]:
    """The whole machine's CPU seconds so far by kind (user + nice, system + irq + softirq, I/O wait, steal): the
    benchmark runs alone, so the difference across a run is that run's (pool workers and forkserver included,
    which no rusage of ours would see once they outlive their parent's wait)."""
    with open("/proc/stat") as f:
        ticks = [int(v) for v in f.readline().split()[1:]]
    hz = os.sysconf("SC_CLK_TCK")
    return {k: sum(ticks[i] for i in cols if i < len(ticks)) / hz for k, cols in CPU_KINDS.items()}


def with_cpu(fn, *args):
    """(what fn returns, the CPU seconds by kind it took)."""
    before = cpu_seconds()
    out = fn(*args)
    after = cpu_seconds()
    return out, {k: round(after[k] - before[k], 2) for k in before}


def ceiling(root: Path, workers: int, write_to: Path | None = None, region: bool = False) -> float:
    """Seconds for N processes to decode (reduced), crop and resize every row's face; nothing written, or with
    `write_to` the same three files per photo as the converter, written plainly (no checks, no atomic renames).
    With `region`, only the face's part of each photo is decoded, as the converter does (jpeg_region)."""
    from converters.parallel import parallel_map
    if write_to is not None:
        shutil.rmtree(write_to, ignore_errors=True)
        write_to.mkdir(parents=True)
        os.sync()
    t0 = time.perf_counter()
    with open(root / "training.csv", newline="") as f:
        jobs = [(str(root / "Manually_Annotated_Images" / r[0]), tuple(float(v) for v in r[1:5]),
                 None if write_to is None else str(write_to / f"r{k}"), region)
                for k, r in enumerate(list(csv.reader(f))[1:])]
    sum(parallel_map(_ceiling_job, jobs, workers))
    return time.perf_counter() - t0


# The converter's own peak: VmHWM of its process image. (getrusage's ru_maxrss would not do: Linux carries it over
# exec from the forked parent, so it reports this benchmark's own memory whenever that is larger.)
PEAK = "import atexit, sys, runpy; atexit.register(lambda: print('PEAK_RSS_KB', next(l.split()[1] for l in " \
       "open('/proc/self/status') if l.startswith('VmHWM')), file=sys.stderr)); sys.argv = ['convert'] + sys.argv[1:]; " \
       "runpy.run_module('converters.convert', run_name='__main__', alter_sys=True)"


def _convert_cmd(root: Path, out: Path, workers: int) -> list[str]:
    return [sys.executable, "-c", PEAK, "--input", str(root), "--out", str(out), "--sizes", str(SIZE),
            "--formats", "crops", "yolo", "--split", "training", "--workers", str(workers), "--quiet"]


def convert(root: Path, out: Path, workers: int) -> tuple[float, int]:
    """(seconds, peak RSS of the converter's main process in KB) for a fresh conversion."""
    shutil.rmtree(out, ignore_errors=True)
    os.sync()
    return _run(root, out, workers)


def _run(root: Path, out: Path, workers: int) -> tuple[float, int]:
    """(seconds, peak RSS in KB) of the converter writing into `out` as it stands."""
    t0 = time.perf_counter()
    run = subprocess.run(_convert_cmd(root, out, workers), capture_output=True, text=True, cwd=PROJECT_ROOT)
    seconds = time.perf_counter() - t0
    if run.returncode != 0:
        raise RuntimeError(f"converter failed: {run.stderr[-2000:]}")
    return seconds, int(run.stderr.split("PEAK_RSS_KB")[-1].split()[0])


def tree_digest(out: Path) -> str:
    """One digest of every output file (name and bytes, the folder's own path made neutral)."""
    h = hashlib.sha1()
    here = str(out.resolve()).encode()
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.name != ".emodet.lock":
            h.update(str(p.relative_to(out)).encode() + b"\0" + p.read_bytes().replace(here, b"OUT"))
    return h.hexdigest()


def killed_and_resumed(root: Path, out: Path, workers: int, after: float) -> dict:
    """SIGKILL the converter `after` seconds in, rerun it; seconds of the rerun and its output digest."""
    shutil.rmtree(out, ignore_errors=True)
    proc = subprocess.Popen(_convert_cmd(root, out, workers), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            cwd=PROJECT_ROOT, start_new_session=True)
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    time.sleep(2)  # its helpers get SIGTERM as it goes
    written = sum(1 for _ in out.rglob("*.png"))
    seconds, _ = _run(root, out, workers)
    return dict(killed_after_s=after, crops_before_rerun=written, rerun_seconds=seconds, digest=tree_digest(out))


def bench_convert_scale(rows: int = 50_000, small: int = 5_000, workers: int = 2) -> dict:
    root = generate(rows, workers)
    sub = subset(root, small)
    for p in (root / "Manually_Annotated_Images").rglob("*.jpg"):  # warm the page cache for every run alike
        p.read_bytes()
    out = RUNS_DIR / "affectnet-scale-out"
    result = dict(rows=rows, small=small, workers=workers)
    # 1 vs N workers on the small set, ceilings and converter alternating
    for n in (1, workers):
        result[f"ceiling_small_{n}_s"] = ceiling(sub, n)
        result[f"region_small_{n}_s"] = ceiling(sub, n, None, True)
        result[f"convert_small_{n}_s"], result[f"rss_small_{n}_kb"] = convert(sub, out / f"small{n}", n)
        result[f"ceiling_writes_small_{n}_s"] = ceiling(sub, n, out / f"plain{n}", True)
    clean = tree_digest(out / f"small{workers}")
    half = result[f"convert_small_{workers}_s"] / 2
    resumed = killed_and_resumed(sub, out / "killed", workers, half)
    result["resume"] = dict(resumed, equal_to_clean=resumed["digest"] == clean)
    # all rows, N workers: the four in turn, ROUNDS times (this machine's speed, and above all the kernel's cost of
    # making a file, drift by more than the differences measured)
    rounds = []
    for _ in range(ROUNDS):
        c, cpu_c = with_cpu(ceiling, root, workers)
        g, cpu_g = with_cpu(ceiling, root, workers, None, True)
        (v, rss), cpu_v = with_cpu(convert, root, out / "all", workers)
        w, cpu_w = with_cpu(ceiling, root, workers, out / "plain-all", True)
        rounds.append(dict(ceiling_s=c, region_s=g, convert_s=v, writes_s=w, rss_kb=rss, cpu_ceiling=cpu_c,
                           cpu_region=cpu_g, cpu_convert=cpu_v, cpu_writes=cpu_w))
    result.update(full_size(rounds))
    shutil.rmtree(out, ignore_errors=True)
    result["markdown"] = markdown(result)
    return result


ROUNDS = 3


def full_size(rounds: list[dict]) -> dict:
    """The full-size figures over the rounds: median seconds of each run, the peak memory, the mean CPU time by kind,
    and each round's converter / ceiling."""
    def mean_cpu(key):
        return {k: sum(x[key][k] for x in rounds) / len(rounds) for k in rounds[0][key]}
    return dict(rounds=len(rounds), ratios=[x["ceiling_s"] / x["convert_s"] for x in rounds],
                region_ratios=[x["region_s"] / x["convert_s"] for x in rounds],
                ceiling_all_s=statistics.median(x["ceiling_s"] for x in rounds),
                region_ceiling_all_s=statistics.median(x["region_s"] for x in rounds),
                convert_all_s=statistics.median(x["convert_s"] for x in rounds),
                ceiling_writes_all_s=statistics.median(x["writes_s"] for x in rounds),
                rss_all_kb=max(x["rss_kb"] for x in rounds), cpu_ceiling_all=mean_cpu("cpu_ceiling"),
                cpu_region_all=mean_cpu("cpu_region"), cpu_convert_all=mean_cpu("cpu_convert"),
                cpu_ceiling_writes_all=mean_cpu("cpu_writes"))


def markdown(r: dict) -> str:
    n, small, rows = r["workers"], r["small"], r["rows"]

    lines = ["## AffectNet-scale conversion: memory, throughput against the compute ceiling, resume", "",
             f"Synthetic AffectNet-format photos (`python -m converters.synthetic --affectnet-sizes`: long side "
             f"425 +- 350 px, one face each), 48 px crops + YOLO set. Ceiling: {n} processes that only decode "
             "(reduced, as the converter does), crop and resize each face, writing nothing. Face's part: the same, "
             "decoding only the part of the photo that holds the face, as the converter does "
             "(`converters/jpeg_region.py`); + writes: that and the converter's three files a photo (PNG crop, "
             "linked JPEG, label) written plainly. Same rows, same cores, one run.", "",
             "| rows | processes | ceiling images/s | face's part | face's part + plain writes | converter images/s | "
             "converter / ceiling | converter / face's part | converter / face's part + writes | converter peak RSS |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def row(count, k, c, g, w, v, rss):
        return (f"| {count:,} | {k} | {count / r[c]:.0f} | {count / r[g]:.0f} | {count / r[w]:.0f} | "
                f"{count / r[v]:.0f} | {r[c] / r[v]:.0%} | {r[g] / r[v]:.0%} | {r[w] / r[v]:.0%} | "
                f"{r[rss] / 1024:.0f} MB |")
    for k in (1, n):
        lines.append(row(small, k, f"ceiling_small_{k}_s", f"region_small_{k}_s", f"ceiling_writes_small_{k}_s",
                         f"convert_small_{k}_s", f"rss_small_{k}_kb"))
    lines.append(row(rows, n, "ceiling_all_s", "region_ceiling_all_s", "ceiling_writes_all_s", "convert_all_s",
                     "rss_all_kb"))
    if "ratios" in r:
        lines += ["", f"{rows:,} rows: the four run in turn, {r['rounds']} rounds; the row shows each one's median. "
                  f"Converter / ceiling in each round: {', '.join(f'{x:.0%}' for x in r['ratios'])}; converter / "
                  f"face's part: {', '.join(f'{x:.0%}' for x in r['region_ratios'])}."]
    grow = (r["rss_all_kb"] - r[f"rss_small_{n}_kb"]) * 1024 / (rows - small)
    res = r["resume"]
    lines += ["", f"Peak memory from {small:,} to {rows:,} rows: {grow:+.0f} bytes per row. "
              f"Scaling 1 -> {n} processes: converter {r[f'convert_small_1_s'] / r[f'convert_small_{n}_s']:.2f}x, "
              f"ceiling {r[f'ceiling_small_1_s'] / r[f'ceiling_small_{n}_s']:.2f}x.",
              f"Killed with SIGKILL after {res['killed_after_s']:.1f} s ({res['crops_before_rerun']:,} crops on disk), "
              f"rerun in {res['rerun_seconds']:.1f} s: output {'identical to' if res['equal_to_clean'] else 'DIFFERENT from'}"
              f" the clean run's, byte for byte.", "",
              ""]
    if "cpu_convert_all" in r:
        lines += cpu_table(r)
    lines += [f"Command: `python -m scripts.bench --parts convert-scale --rows {rows}`", ""]
    return "\n".join(lines)


def cpu_table(r: dict) -> list[str]:
    """Where the full-size runs spent their CPU time, by kind, and what the converter adds over the ceiling that
    decodes as it does."""
    runs = {"ceiling (decode, crop, resize)": r["cpu_ceiling_all"],
            "face's part (decoding only the face's part, crop, resize)": r["cpu_region_all"],
            "face's part + plain writes (PNG crop, linked JPEG, label)": r["cpu_ceiling_writes_all"],
            "converter": r["cpu_convert_all"]}
    rows = r["rows"]
    lines = [f"CPU time of the {rows:,}-row runs, whole machine (/proc/stat; nothing else ran), in ms per photo:", "",
             "| run | user | system (kernel) | I/O wait | steal |", "|---|---:|---:|---:|---:|"]
    for name, c in runs.items():
        lines.append(f"| {name} | {c['user'] * 1e3 / rows:.2f} | {c['system'] * 1e3 / rows:.2f} | "
                     f"{c['iowait'] * 1e3 / rows:.2f} | {c['steal'] * 1e3 / rows:.2f} |")
    base, conv, plain = r["cpu_region_all"], r["cpu_convert_all"], r["cpu_ceiling_writes_all"]
    gap = {k: (conv[k] - base[k]) * 1e3 / rows for k in base}
    plain_gap = {k: (plain[k] - base[k]) * 1e3 / rows for k in base}
    total = sum(gap[k] for k in ("user", "system"))
    lines += ["", f"The converter over the face's-part ceiling: {gap['user']:+.2f} ms user and {gap['system']:+.2f} ms "
              f"kernel per photo ({gap['system'] / total:.0%} of the added CPU time in the kernel); writing the same "
              f"three files plainly adds {plain_gap['user']:+.2f} ms user and {plain_gap['system']:+.2f} ms kernel.",
              ""]
    return lines
