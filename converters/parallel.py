"""Process pools that are safe after OpenCV/torch have started threads in the parent."""
from __future__ import annotations

import itertools
import multiprocessing as mp
import os
from collections import deque
from typing import Callable, Iterable, Iterator

from . import orphan_guard
from .orphan_guard import POOL_PARENT, die_with_parent

IN_FLIGHT = 4  # batches queued per worker: enough to keep every worker busy, few enough that memory stays flat


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS tells it, e.g. under taskset or a container's
    cpuset; else every core)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _init_worker():
    import cv2
    cv2.setNumThreads(1)  # one process per core already; OpenCV's own threads would oversubscribe
    die_with_parent(orphan_guard.SERVER_PID)  # exits now if the forkserver that forked this worker is gone


def _apply_all(fn: Callable, batch: list) -> list:
    return [fn(job) for job in batch]


def parallel_map(fn: Callable, jobs: Iterable, workers: int, chunksize: int | None = None) -> Iterator:
    """Ordered map over `jobs` in `workers` processes (in-process when workers <= 1 or one job).

    `jobs` may be a generator: it is consumed as results are taken, with at most IN_FLIGHT batches per worker
    queued (Pool.imap would drain a generator into its queue at once, holding every job in memory).
    Forking a parent whose OpenCV thread pool is running deadlocks the child, so workers come from a
    forkserver, which starts clean.
    """
    sized = hasattr(jobs, "__len__")
    if workers <= 1 or (sized and len(jobs) <= 1):
        yield from map(fn, jobs)
        return
    chunk = chunksize or (max(1, min(32, len(jobs) // (8 * workers))) if sized else 16)
    ctx = mp.get_context("forkserver")
    # the forkserver process (the workers' parent) must die with us too: it imports this module first
    ctx.set_forkserver_preload(["converters.orphan_guard"])
    os.environ[POOL_PARENT] = str(os.getpid())  # read by the forkserver, which starts with the first pool
    try:
        pool = ctx.Pool(workers, initializer=_init_worker)
    finally:
        del os.environ[POOL_PARENT]  # not inherited by anything else this process starts
    with pool:
        pending: deque = deque()
        it = iter(jobs)
        while batch := list(itertools.islice(it, chunk)):
            pending.append(pool.apply_async(_apply_all, (fn, batch)))
            if len(pending) >= IN_FLIGHT * workers:
                yield from pending.popleft().get()
        while pending:
            yield from pending.popleft().get()
