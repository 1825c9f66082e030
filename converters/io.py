"""Atomic, idempotent file writes: a crash never leaves a half-written file under its final name."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes, known_missing: bool = False) -> bool:
    """Write `data` to `path` via a temp file + rename; skip (return False) when the file already holds it.

    `known_missing` skips that comparison when the caller has just seen that the file does not exist.
    """
    path = os.fspath(path)
    if not known_missing:
        try:
            if os.stat(path).st_size == len(data):
                with open(path, "rb") as f:
                    if f.read() == data:
                        return False
        except FileNotFoundError:
            pass
    # the temp name is unique per process; one file is only ever written by one process at a time
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        f = open(tmp, "wb")
    except FileNotFoundError:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        f = open(tmp, "wb")
    try:
        with f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.lexists(tmp):
            os.unlink(tmp)
        raise
    return True


def atomic_write_text(path: Path, text: str) -> bool:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data) -> Path:
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return Path(path)


# image files the readers accept (lower-cased suffix); what OpenCV and PIL both decode
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")

LOCK_NAME = ".emodet.lock"


@contextmanager
def output_lock(out: Path):
    """Hold an exclusive lock on an output folder while writing into it: a second conversion into the same
    folder is refused in one line instead of interleaving its files with ours."""
    import fcntl
    from .errors import EmoDetError
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / LOCK_NAME, "a") as handle:  # "a": an existing lock file is not touched (reruns change nothing)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise EmoDetError(f"{out}: another EmoDet run is writing into this folder ({LOCK_NAME}); wait for it "
                              "or choose another output folder") from None
        try:
            yield out
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_leftovers(out: Path) -> int:
    """Delete the temporary files an interrupted run left under `out` (every writer here names them *.tmp);
    call it holding output_lock, so no live writer's file is removed. Returns how many went."""
    n = 0
    for path in Path(out).rglob("*.tmp"):
        path.unlink(missing_ok=True)
        n += 1
    return n
