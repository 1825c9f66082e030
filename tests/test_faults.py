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
