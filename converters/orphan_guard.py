"""Linux: a helper process gets SIGTERM when the process that started it dies. A kill -9 of the converter would
otherwise leave its forkserver and pool workers running, still writing into the output folder. Importing this
module arms it for the importing process: the forkserver preloads it (converters.parallel), workers call it."""
from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent(expected_parent: int | None = None) -> None:
    """Arm the signal; and if the parent is already gone (it died before we could arm: the signal would never
    come), or is not `expected_parent`, exit now."""
    if sys.platform.startswith("linux"):
        parent = os.getppid()
        try:
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
        except OSError:
            return
        if os.getppid() != parent or (expected_parent is not None and parent != expected_parent):
            os._exit(0)


POOL_PARENT = "EMODET_POOL_PARENT"  # pid of the process that starts a pool (set by converters.parallel)

# The forkserver's pid, set in the forkserver and inherited by every worker it forks: the parent a worker must still
# have when it arms its own signal. A worker forked just before the forkserver died would otherwise read its new
# parent (init) as the one to watch, never get a signal, and wait on its task pipe for ever (seen once in 50 kills).
SERVER_PID: int | None = None

# Imported by that process's forkserver, preloading this module: it must die with the pool's creator, also when
# the creator was killed while the forkserver was still starting.
if (os.environ.get(POOL_PARENT, str(os.getpid())) != str(os.getpid())
        and "multiprocessing.forkserver" in sys.modules):
    SERVER_PID = os.getpid()
    die_with_parent(int(os.environ[POOL_PARENT]))
