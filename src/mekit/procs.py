"""Worker processes that die with their parent, however the parent dies; the CPUs they share.

`mekit prepare` and `mekit train` run faces, flow and folds in pools of worker processes of
several hundred MB each. Python's pools clean up when the parent exits normally, but not when
it is killed (SIGKILL, or SIGTERM with its default action): the workers then ran on for
minutes. Each worker calls `die_with_parent` first, which asks the Linux kernel to SIGKILL it
when its parent process goes away (prctl PR_SET_PDEATHSIG), and exits at once if the parent is
already gone. On other systems it does nothing (the pools' own clean-up still applies).
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

_PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int | None = None) -> bool:
    """Arrange for this process to be killed when its parent dies; True when armed.

    `parent_pid` (the pid the parent had when it started this process, `os.getpid()` there)
    closes the race where the parent died before this call: the process then exits at once.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(1)  # the parent is already gone: nobody wants this worker's result
    return armed


def usable_cpus() -> int:
    """The CPUs this process may run on (its affinity mask on Linux, else the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
