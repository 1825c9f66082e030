"""kill -9 a conversion at random moments: the rerun's output equals a clean run's, byte for byte, with no
temporary files left and no worker process outliving its killed parent."""
from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _tree(out: Path) -> dict[str, str]:
    """Digest of every file, with the output folder's own path (in list files and .data files) made neutral."""
    here = str(out.resolve()).encode()
    return {str(p.relative_to(out)): hashlib.sha1(p.read_bytes().replace(here, b"OUT")).hexdigest()
            for p in sorted(out.rglob("*")) if p.is_file() and p.name != ".emodet.lock"}


def _convert(sample: Path, out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "converters.convert", "--input", str(sample), "--out", str(out), "--sizes", "48",
           "96", "--workers", "2", "--quiet"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)


@pytest.mark.parametrize("seed", range(5))
def test_killed_at_a_random_moment_then_rerun_equals_a_clean_run(sample_dir, tmp_path_factory, seed):
    root = tmp_path_factory.getbasetemp() / "faults"
    clean = root / "clean"
    if not clean.exists():
        t0 = time.perf_counter()
        assert _convert(sample_dir, clean).wait(timeout=300) == 0
        (root / "seconds").write_text(str(time.perf_counter() - t0))
    seconds = float((root / "seconds").read_text())
    out = root / f"killed{seed}"
    proc = _convert(sample_dir, out)
    time.sleep(random.Random(seed).uniform(0.3, 0.9) * seconds)
    group = os.getpgid(proc.pid)
    proc.send_signal(signal.SIGKILL)  # the converter only: its workers must follow by themselves
    proc.wait()
    for _ in range(50):  # the helpers get SIGTERM as their parents go; give them 5 s at most
        leftover = subprocess.run(["pgrep", "-g", str(group)], capture_output=True, text=True).stdout.split()
        if not leftover:
            break
        time.sleep(0.1)
    survivors = "" if not leftover else subprocess.run(["ps", "-o", "pid,ppid,stat,cmd", "-p", ",".join(leftover)],
                                                       capture_output=True, text=True).stdout
    assert leftover == [], f"processes outlived the killed converter: {leftover}\n{survivors}"
    assert _convert(sample_dir, out).wait(timeout=300) == 0
    assert list(out.rglob("*.tmp")) == []
    assert _tree(out) == _tree(clean)


WORKER = """
import os, sys, time
from converters import orphan_guard
server = os.getpid()  # this process plays the forkserver
if os.fork():
    os._exit(0)  # the forkserver dies before its new worker has armed its signal
while os.getppid() == server:
    time.sleep(0.01)
orphan_guard.die_with_parent(server if sys.argv[2] == "server" else None)  # what the pool initializer does
open(sys.argv[1], "w").write("outlived its forkserver")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the parent-death signal is Linux's")
@pytest.mark.parametrize("expected", ["server", None])
def test_a_worker_forked_as_its_forkserver_dies_exits_too(tmp_path, expected):
    """The race behind a survivor seen once in 50 kills: without the forkserver's pid to compare with (None, as
    before), the worker watches its new parent instead and lives on."""
    marker = tmp_path / "alive"
    subprocess.run([sys.executable, "-c", WORKER, str(marker), str(expected)], check=True,
                   cwd=Path(__file__).parents[1])
    for _ in range(100):
        if marker.exists():
            break
        time.sleep(0.02)
    assert marker.exists() == (expected is None)


def _parents(_):
    from converters import orphan_guard
    return orphan_guard.SERVER_PID, os.getppid()


def test_pool_workers_know_the_forkserver_that_forked_them():
    from converters.parallel import parallel_map
    seen = set(parallel_map(_parents, range(8), workers=2, chunksize=1))
    assert len(seen) == 1 and next(iter(seen))[0] == next(iter(seen))[1] is not None
