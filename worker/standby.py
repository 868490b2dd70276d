"""A pipeline process forked before its adapter arrives.

RQ forks a worker's horse once a job is dequeued. Forking a worker (80 MB of shared pages)
takes ~10 ms on a 2-core VM, a tenth of a create's path to `active`. An idle worker
instead keeps one child forked ahead, blocked on a pipe; the job is handed to it, and it
runs exactly what RQ's own horse would. The child is still one process per adapter, forked
from the same worker: nothing about isolation changes, only when the fork happens.

A standby that is gone (killed, or its pipe broken) is reaped and the worker forks as RQ
does. While waiting, a standby dies with its worker: the kernel's parent-death signal, and
the pipe's end of file when the worker exits.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable, Iterator

from worker.lineage import die_with_parent

_MESSAGE_MAX = 512  # one write below PIPE_BUF: the child reads it whole
# The worker's stop signals: RQ's handlers raise from wherever the worker is, and raised
# inside os.fork()'s at-fork callbacks the exception is printed and dropped, stop lost.
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}


@contextlib.contextmanager
def stop_signals_held() -> Iterator[None]:
    """Defers SIGINT and SIGTERM until the block ends, then raises them again.

    A signal mask would not do: the worker has other threads (RQ's pub/sub), and Python
    runs a handler in the main thread whichever thread the kernel picked.
    """
    caught: list[int] = []
    previous = {
        sig: signal.signal(sig, lambda signum, _: caught.append(signum)) for sig in STOP_SIGNALS
    }
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in caught:
            signal.raise_signal(signum)


class Standby:
    """One forked child waiting for the message that says which job to run."""

    def __init__(self, pid: int, writer: int) -> None:
        self.pid = pid
        self._writer = writer

    @classmethod
    def fork(cls, run: Callable[[str], None], prepare: Callable[[], None]) -> Standby:
        """Forks the child; in it, calls `prepare()`, waits for a message and calls
        `run(message)`, then exits. Call it with `stop_signals_held()`.

        The child exits without calling `run` when the pipe ends (the worker closed it or
        died). It starts a process group of its own, as RQ's horse does, so a signal
        meant for the worker's group does not reach it.
        """
        reader, writer = os.pipe()
        pid = os.fork()
        if pid == 0:  # the standby
            code = 1
            try:
                os.close(writer)
                os.setpgrp()
                die_with_parent(signal.SIGKILL)
                signal.signal(signal.SIGINT, signal.SIG_IGN)  # as RQ's horse: the worker's
                signal.signal(signal.SIGTERM, signal.SIG_DFL)  # handlers are not ours
                prepare()
                message = _read_message(reader)
                os.close(reader)
                if message:
                    run(message)
                code = 0
            finally:
                os._exit(code)
        os.close(reader)
        return cls(pid, writer)

    def hand_over(self, message: str) -> bool:
        """Gives the child its job; False if it is gone (then it is reaped)."""
        data = message.encode() + b"\n"
        if len(data) > _MESSAGE_MAX:
            raise ValueError("a standby's message must fit one pipe write")
        try:
            written = os.write(self._writer, data)
        except OSError:
            written = 0
        self._close()
        if written == len(data) and self.alive():
            return True
        self.discard()
        return False

    def alive(self) -> bool:
        """Whether the child still runs (an exited one is reaped here)."""
        with contextlib.suppress(ChildProcessError):
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
            return pid == 0
        return False

    def discard(self) -> None:
        """Ends the child (it holds nothing yet) and reaps it."""
        self._close()
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)

    def _close(self) -> None:
        if self._writer >= 0:
            with contextlib.suppress(OSError):
                os.close(self._writer)
            self._writer = -1


def _read_message(reader: int) -> str:
    """The message, or "" if the pipe ended first."""
    data = b""
    while not data.endswith(b"\n"):
        try:
            chunk = os.read(reader, _MESSAGE_MAX)
        except InterruptedError:
            continue
        if not chunk:
            return ""
        data += chunk
    return data[:-1].decode()
