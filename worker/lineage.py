"""Tying a child process's life to its parent's (Linux `PR_SET_PDEATHSIG`)."""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_parent(sig: signal.Signals) -> None:
    """Asks the kernel to send `sig` to this process when its parent dies.

    Args:
        sig: SIGKILL to vanish with the parent, SIGTERM to shut down cleanly.
    """
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return  # not Linux: heartbeats still expose the loss, just not the orphan
    if os.getppid() != parent:  # the parent died before prctl took effect
        os.kill(os.getpid(), sig)
