"""Linux: a helper process gets SIGTERM when the process that started it dies. A kill -9 of the converter would
otherwise leave its forkserver and pool workers running, still writing into the output folder. Importing this
module arms it for the importing process: the forkserver preloads it (converters.parallel), workers call it."""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            pass


POOL_PARENT = "EMODET_POOL_PARENT"  # pid of the process that starts a pool (set by converters.parallel)

if os.environ.get(POOL_PARENT) == str(os.getppid()):  # we are that process's forkserver, preloading this module
    die_with_parent()
