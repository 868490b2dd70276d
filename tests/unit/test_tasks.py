"""`sluice.tasks`: the first result wins, nothing outlives the call, no exception is lost.

No sockets and no sleeps on the wall clock: coroutines wait on events and futures, and
the loop is stepped with `asyncio.sleep(0)`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import structlog
from structlog.testing import capture_logs

from sluice.tasks import (
    cancel_and_wait,
    exception_of,
    first_completed,
    log_exception,
    run_eagerly,
)


class Crash(Exception):
    pass


class Witness:
    """Coroutines that record how they ended."""

    def __init__(self, expect: int = 0) -> None:
        self.all_started = asyncio.Event()  # set once `expect` coroutines are running
        self._expect = expect
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.exited: list[str] = []

    async def forever(self, name: str) -> str:
        self.started.append(name)
        if len(self.started) == self._expect:
            self.all_started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            self.cancelled.append(name)
            raise
        finally:
            self.exited.append(name)
        return name  # pragma: no cover - never reached

    async def returns(self, name: str, after: asyncio.Event | None = None) -> str:
        self.started.append(name)
        if after is not None:
            await after.wait()
        self.exited.append(name)
        return name

    async def raises(self, exc: Exception, after: asyncio.Event | None = None) -> str:
        if after is not None:
            await after.wait()
        raise exc


async def test_returns_the_first_result_and_cancels_and_awaits_the_others() -> None:
    w = Witness()
    go = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.call_soon(go.set)
    result = await first_completed(w.forever("a"), w.returns("b", go), w.forever("c"))
    assert result == "b"
    # Cancelled and already exited when the call returns, not merely asked to stop.
    assert sorted(w.cancelled) == ["a", "c"]
    assert sorted(w.exited) == ["a", "b", "c"]


async def test_no_task_is_left_behind() -> None:
    before = asyncio.all_tasks()
    w = Witness()
    await first_completed(w.returns("x"), w.forever("y"), w.forever("z"))
    assert asyncio.all_tasks() == before


async def test_a_crash_of_the_first_is_re_raised() -> None:
    w = Witness()
    with pytest.raises(Crash, match="boom"):
        await first_completed(w.forever("a"), w.raises(Crash("boom")))
    assert w.cancelled == ["a"]
    assert w.exited == ["a"]


async def test_the_earliest_in_argument_order_wins_a_tie() -> None:
    w = Witness()
    assert await first_completed(w.returns("a"), w.returns("b")) == "a"
    assert await first_completed(w.returns("b"), w.returns("a")) == "b"


async def test_another_tasks_exception_is_logged_not_lost() -> None:
    w = Witness()
    with capture_logs() as logs:
        # Both finish in the same iteration: "a" is first, the crash of the other is logged.
        result = await first_completed(w.returns("a"), w.raises(Crash("late")))
    assert result == "a"
    (entry,) = logs
    assert entry["event"] == "task_failed"
    assert entry["log_level"] == "error"
    assert entry["error"] == "Crash('late')"
    assert isinstance(entry["exc_info"], Crash)
    assert entry["task"].endswith("Witness.raises")


async def test_a_failing_cleanup_is_logged_with_the_callers_context() -> None:
    async def bad_cleanup() -> str:
        try:
            await asyncio.Event().wait()
        finally:
            raise Crash("cleanup")  # what a careless cleanup does
        return "never"  # pragma: no cover

    w = Witness()
    with capture_logs() as logs:
        log = structlog.get_logger().bind(adapter_id="a1")
        assert await first_completed(w.returns("done"), bad_cleanup(), log=log) == "done"
    (entry,) = logs
    assert (entry["event"], entry["adapter_id"]) == ("task_failed", "a1")
    assert entry["task"].endswith("bad_cleanup")


async def test_the_callers_cancellation_propagates_and_cancels_all() -> None:
    w = Witness(expect=2)
    caller = asyncio.create_task(first_completed(w.forever("a"), w.forever("b")))
    await w.all_started.wait()
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert sorted(w.cancelled) == ["a", "b"]
    assert sorted(w.exited) == ["a", "b"]


async def test_a_second_cancellation_still_waits_for_the_tasks_to_exit() -> None:
    entered, released = asyncio.Event(), asyncio.Event()
    exited: list[str] = []

    async def slow_cleanup() -> None:
        try:
            entered.set()
            await asyncio.Event().wait()
        finally:
            await released.wait()  # e.g. a close handshake
            exited.append("slow")

    caller = asyncio.create_task(first_completed(slow_cleanup()))
    await entered.wait()
    caller.cancel()
    await asyncio.sleep(0)
    caller.cancel()  # impatient: cancelled again while the cleanup runs
    await asyncio.sleep(0)
    assert not caller.done()
    released.set()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert exited == ["slow"]


async def test_no_coroutine_is_an_error() -> None:
    with pytest.raises(ValueError):
        await first_completed()


async def test_cancel_and_wait_reports_the_stuck_ones() -> None:
    release = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()

    w = Witness()
    polite = asyncio.create_task(w.forever("polite"))
    sticky = asyncio.create_task(stuck())
    await asyncio.sleep(0)
    # The timeout bounds the wait for a cleanup that never ends; it is not a sleep.
    assert await cancel_and_wait([polite, sticky], timeout_s=0.01) == {sticky}
    assert polite.cancelled()
    release.set()
    assert await cancel_and_wait([sticky]) == set()
    assert sticky.cancelled()


async def test_exception_of_and_log_exception() -> None:
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[Any] = loop.create_future()
    assert exception_of(pending) is None
    cancelled: asyncio.Future[Any] = loop.create_future()
    cancelled.cancel()
    assert exception_of(cancelled) is None
    fine: asyncio.Future[int] = loop.create_future()
    fine.set_result(1)
    assert exception_of(fine) is None
    failed: asyncio.Future[int] = loop.create_future()
    failed.set_exception(Crash("x"))
    with capture_logs() as logs:
        assert isinstance(log_exception(failed, event="decode_failed"), Crash)
        assert log_exception(fine) is None
        # Seen by a done callback first, then by the cleanup: reported once.
        assert isinstance(log_exception(failed), Crash)
        assert await cancel_and_wait([failed]) == set()
    assert [entry["event"] for entry in logs] == ["decode_failed"]


async def test_run_eagerly_finishes_a_coroutine_that_never_waits_in_the_call() -> None:
    done: list[str] = []

    async def handler() -> None:
        done.append("handled")

    run_eagerly(handler())
    assert done == ["handled"]  # before any turn of the loop
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_run_eagerly_continues_a_waiting_coroutine_in_a_task() -> None:
    steps: list[object] = []
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()

    async def handler() -> None:
        steps.append("before")
        await asyncio.sleep(0)  # a bare yield
        steps.append(await gate)  # a future's result comes back to the coroutine

    run_eagerly(handler())
    assert steps == ["before"]
    await asyncio.sleep(0)
    gate.set_result(7)
    for _ in range(5):
        await asyncio.sleep(0)
    assert steps == ["before", 7]


async def test_run_eagerly_logs_what_fails_now_or_later() -> None:
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def fails_now() -> None:
        raise Crash("now")

    async def fails_later() -> None:
        await gate
        raise Crash("later")

    with capture_logs() as logs:
        run_eagerly(fails_now())
        run_eagerly(fails_later())
        gate.set_result(None)
        for _ in range(5):
            await asyncio.sleep(0)
    errors = [e["error"] for e in logs if e["event"] == "eager_call_failed"]
    assert errors == ["Crash('now')", "Crash('later')"]


async def test_a_cancelled_eager_task_cancels_its_coroutine() -> None:
    witness = Witness()
    run_eagerly(witness.forever("eager"))
    (task,) = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    await cancel_and_wait([task])
    assert witness.cancelled == ["eager"]
