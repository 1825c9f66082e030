"""Process pools that are safe after OpenCV/torch have started threads in the parent."""
from __future__ import annotations

import multiprocessing as mp
import os
from typing import Callable, Iterator

from .orphan_guard import POOL_PARENT, die_with_parent


def _init_worker():
    import cv2
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe
    die_with_parent()


def parallel_map(fn: Callable, jobs: list, workers: int, chunksize: int | None = None) -> Iterator:
    """Ordered map over `jobs` in `workers` processes (in-process when workers <= 1 or one job).

    Forking a parent whose OpenCV thread pool is running deadlocks the child, so workers come from a
    forkserver, which starts clean.
    """
    if workers <= 1 or len(jobs) <= 1:
        yield from map(fn, jobs)
        return
    chunk = chunksize or max(1, min(32, len(jobs) // (8 * workers)))
    ctx = mp.get_context("forkserver")
    # the forkserver process (the workers' parent) must die with us too: it imports this module first
    ctx.set_forkserver_preload(["converters.orphan_guard"])
    os.environ[POOL_PARENT] = str(os.getpid())  # read by the forkserver, which starts with the first pool
    try:
        pool = ctx.Pool(workers, initializer=_init_worker)
    finally:
        del os.environ[POOL_PARENT]  # not inherited by anything else this process starts
    with pool:
        yield from pool.imap(fn, jobs, chunksize=chunk)
