"""worker.standby: a child forked ahead runs what it is handed, or goes away quietly.

Real forks, no Redis: the child writes what it did to a file the test reads.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from worker.standby import Standby, stop_signals_held

pytestmark = pytest.mark.timeout(30)


def _recorder(path: Path) -> tuple[Callable[[str], None], Callable[[], None]]:
    def run(message: str) -> None:
        with path.open("a") as out:
            out.write(f"ran {message} in {os.getpid()}\n")

    def prepare() -> None:
        with path.open("a") as out:
            out.write(f"prepared in {os.getpid()}\n")

    return run, prepare


def _exit_code(pid: int) -> int:
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_the_child_prepares_then_runs_the_message_it_is_handed(tmp_path: Path) -> None:
    record = tmp_path / "record"
    run, prepare = _recorder(record)
    standby = Standby.fork(run, prepare=prepare)
    assert standby.hand_over("job-1 execution-1")
    assert _exit_code(standby.pid) == 0
    assert record.read_text().splitlines() == [
        f"prepared in {standby.pid}",
        f"ran job-1 execution-1 in {standby.pid}",
    ]


def test_a_discarded_child_runs_nothing(tmp_path: Path) -> None:
    record = tmp_path / "record"
    run, prepare = _recorder(record)
    standby = Standby.fork(run, prepare=prepare)
    standby.discard()
    assert not standby.alive()
    assert "ran" not in (record.read_text() if record.exists() else "")


def test_a_child_that_died_waiting_is_reaped_and_refuses_the_job(tmp_path: Path) -> None:
    run, prepare = _recorder(tmp_path / "record")
    standby = Standby.fork(run, prepare=prepare)
    os.kill(standby.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while standby.alive() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert not standby.hand_over("job-1 execution-1")
    with pytest.raises(ChildProcessError):
        os.waitpid(standby.pid, os.WNOHANG)  # reaped already: no zombie left


def test_the_child_leaves_when_its_pipe_ends(tmp_path: Path) -> None:
    # The worker exiting closes the pipe: the waiting child must not linger.
    record = tmp_path / "record"
    run, prepare = _recorder(record)
    standby = Standby.fork(run, prepare=prepare)
    standby._close()
    assert _exit_code(standby.pid) == 0
    assert "ran" not in record.read_text()


def test_the_child_is_in_a_process_group_of_its_own(tmp_path: Path) -> None:
    # A signal to the worker's group (a process manager's stop) must not reach it.
    run, prepare = _recorder(tmp_path / "record")
    standby = Standby.fork(run, prepare=prepare)
    try:
        deadline = time.monotonic() + 5
        while os.getpgid(standby.pid) != standby.pid and time.monotonic() < deadline:
            time.sleep(0.01)
        assert os.getpgid(standby.pid) == standby.pid
    finally:
        standby.discard()


def test_a_stop_signal_while_forking_is_handled_after_the_fork() -> None:
    # RQ's stop handler raises; raised inside os.fork()'s at-fork hooks it would be lost.
    handled: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, _: handled.append(signum))
    try:
        with stop_signals_held():
            os.kill(os.getpid(), signal.SIGTERM)  # any thread may take it (pytest has several)
            time.sleep(0.05)
            assert handled == []
        time.sleep(0.05)
        assert handled == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)
