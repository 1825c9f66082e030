"""Progress that reads well everywhere: tqdm's bar on a terminal; in a log file or CI (stderr not a terminal) one
plain line every LOG_EVERY seconds and one at the end, instead of hundreds of carriage-return bar fragments."""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator

LOG_EVERY = 10.0  # seconds between lines in a log


def _interactive() -> bool:
    return hasattr(sys.stderr, "isatty") and sys.stderr.isatty()


class _LogLines:
    """The part of tqdm's interface we use (iteration, set_postfix), written as occasional plain lines."""

    def __init__(self, iterable: Iterable, desc: str, total: int | None, unit: str, every: float):
        self.iterable, self.desc, self.unit, self.every = iterable, desc, unit, every
        self.total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
        self.postfix = ""

    def set_postfix(self, **values) -> None:
        self.postfix = "  " + " ".join(f"{k}={v}" for k, v in values.items())

    def _line(self, n: int, t0: float, end: bool = False) -> None:
        dt = time.perf_counter() - t0
        of = f"/{self.total}" if self.total is not None else ""
        rate = f" ({n / dt:.1f} {self.unit}/s)" if dt > 0 else ""
        print(f"{self.desc}: {n}{of} {self.unit}{rate}{' done in ' + format(dt, '.1f') + ' s' if end else ''}"
              f"{self.postfix}", file=sys.stderr, flush=True)

    def __iter__(self) -> Iterator:
        t0 = last = time.perf_counter()
        n = 0
        for item in self.iterable:
            yield item
            n += 1
            now = time.perf_counter()
            if now - last >= self.every:
                self._line(n, t0)
                last = now
        self._line(n, t0, end=True)


class _Quiet:
    def __init__(self, iterable: Iterable):
        self.iterable = iterable

    def set_postfix(self, **values) -> None:
        pass

    def __iter__(self) -> Iterator:
        return iter(self.iterable)


def tracked(iterable: Iterable, desc: str = "", total: int | None = None, unit: str = "it", disable: bool = False,
             leave: bool = True, every: float = LOG_EVERY):
    """Iterate `iterable` with progress shown as fits where stderr goes (see the module docstring)."""
    if disable:
        return _Quiet(iterable)
    if _interactive():
        from tqdm import tqdm
        return tqdm(iterable, desc=desc, total=total, unit=unit, leave=leave)
    return _LogLines(iterable, desc, total, unit, every)
