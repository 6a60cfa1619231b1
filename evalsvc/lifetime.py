"""Child processes that exit when the process that started them dies, however it dies.

`evalsvc serve` runs LitServe, which forks its API servers and a multiprocessing manager and spawns
its model workers; `evalsvc worker` has RQ fork its scheduler. A graceful stop takes them all down,
but a SIGKILL (or an OOM kill) of the parent leaves them running: API servers still listening on the
port (a restart fails with "Address already in use"), a model worker holding the GPU, an RQ scheduler
holding the scheduler lock of a worker that is gone.

On Linux the kernel can tell a child that its parent died: `prctl(PR_SET_PDEATHSIG, SIGTERM)`, set in
the child. SIGTERM rather than SIGKILL lets each stop as it does on a normal shutdown (uvicorn closes
its socket, RQ's scheduler releases its lock). Two places set it:

- `children_exit_with_this_process()` makes every child forked from now on set it first thing
  (`os.register_at_fork`); a fork-started child runs no other code of ours before its target;
- `exit_with_parent(pid)` is for a spawned child (a fresh interpreter, which `fork` hooks do not
  reach), to be called as early as it runs code of ours: LitServe's model worker, in `setup`.

The signal comes when the parent *thread* that started the child ends, so children must be started
from a thread that lives as long as the process: LitServe and RQ start them from the main thread.
Elsewhere than Linux these are no-ops: the children of a killed parent must be stopped by hand there.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

logger = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
_forking_pid: int | None = None
_hook_installed = False


def exit_with_parent(parent_pid: int, sig: signal.Signals = signal.SIGTERM) -> None:
    """Have this process receive `sig` when its parent (`parent_pid`) dies; at once if it already has.

    A parent that died before this call is caught by comparing our parent's pid with the one we
    expect: we were re-parented (to init or a subreaper) if they differ.
    """
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
        error = ctypes.get_errno()
        logger.warning("prctl(PR_SET_PDEATHSIG) failed: %s", os.strerror(error))
        return
    if os.getppid() != parent_pid:
        os.kill(os.getpid(), sig)


def children_exit_with_this_process(sig: signal.Signals = signal.SIGTERM) -> None:
    """Make every process forked from this one (from now on) exit when this one dies."""
    global _hook_installed
    if _hook_installed or not sys.platform.startswith("linux"):
        return
    os.register_at_fork(before=_remember_forking_pid, after_in_child=lambda: _child_started(sig))
    _hook_installed = True


def _remember_forking_pid() -> None:
    global _forking_pid
    _forking_pid = os.getpid()


def _child_started(sig: signal.Signals) -> None:
    if _forking_pid is not None:
        exit_with_parent(_forking_pid, sig)
