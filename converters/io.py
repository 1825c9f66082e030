"""Atomic, idempotent file writes: a crash never leaves a half-written file under its final name."""
from __future__ import annotations

import json
import os
from contextlib import contextmanager
from pathlib import Path


def atomic_write_bytes(path: Path, data: bytes, known_missing: bool = False) -> bool:
    """Write `data` to `path` via a temp file + rename; skip (return False) when the file already holds it.

    `known_missing` skips that comparison when the caller has just seen that the file does not exist, and writes
    the file unnamed first where the filesystem can (_written_unnamed).
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
    if known_missing and _written_unnamed(path, data):
        return True
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


_UNNAMED = hasattr(os, "O_TMPFILE")  # False once the filesystem or /proc turns unnamed files down


def _written_unnamed(path: str, data: bytes) -> bool:
    """Write a new file as an unnamed one in its folder (O_TMPFILE) and link it in, whole, under its name: one
    directory entry made where a temporary file takes three (made, renamed, removed): 40 against 61 us of kernel
    time for a 2.4 KB file in one run here. False, having linked nothing, where the filesystem cannot or `path`
    exists after all: the caller then goes through a temporary file."""
    global _UNNAMED
    if not _UNNAMED:
        return False
    folder = os.path.dirname(path) or "."
    try:
        try:
            fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o666)
        except FileNotFoundError:  # a new folder
            os.makedirs(folder, exist_ok=True)
            fd = os.open(folder, os.O_TMPFILE | os.O_WRONLY, 0o666)
    except OSError:  # EOPNOTSUPP, EISDIR or EINVAL: no unnamed files here
        _UNNAMED = False
        return False
    try:
        view = memoryview(data)
        while view:  # a full disk raises here, as it would writing any other way
            view = view[os.write(fd, view):]
        try:  # linkat(AT_SYMLINK_FOLLOW) through /proc: os.link makes that call only when given a descriptor
            os.link(f"/proc/self/fd/{fd}", path, src_dir_fd=fd, follow_symlinks=True)
        except FileExistsError:
            return False
        except OSError:  # no /proc, or a filesystem that does not link such files
            _UNNAMED = False
            return False
        return True
    finally:
        os.close(fd)


def atomic_write_text(path: Path, text: str) -> bool:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: Path, data) -> Path:
    atomic_write_text(path, json.dumps(data, indent=1) + "\n")
    return Path(path)


# image files every reader here accepts, by lower-cased suffix (a camera writes .JPG): what OpenCV and PIL both
# decode. The one list: a folder read by the converters, predict, training and eval holds the same photos for each.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
# videos predict and the app read frame by frame (OpenCV's FFmpeg backend)
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm")


def is_image(path: Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def is_video(path: Path) -> bool:
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def is_jpeg(path: Path) -> bool:
    """Named a JPEG: read by our own header parser and decoded at a reduced size where the faces allow."""
    return Path(path).suffix.lower() in (".jpg", ".jpeg")


def images_in(folder: Path) -> list[Path]:
    """The image files directly in `folder`, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if is_image(p))


def image_beside(label: Path) -> Path | None:
    """The image a YOLO label file describes: the file beside it with its stem and an image suffix, in lower or
    upper case; None if there is none."""
    for suffix in IMAGE_SUFFIXES:
        for candidate in (suffix, suffix.upper()):
            if (p := Path(label).with_suffix(candidate)).exists():
                return p
    return None


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
