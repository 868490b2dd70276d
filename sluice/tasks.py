"""Owned asyncio tasks: run several, end with the first, never lose an exception.

A pipeline ends when any of its tasks ends (aiortc's `RTCRtpSender.stop()` cancels its
tasks and waits for their exit). `first_completed` is that pattern in one place: every
task it starts is cancelled and awaited before it returns or raises, whatever happens,
and an exception is either re-raised or logged, never dropped with its task.
"""

from __future__ import annotations

import asyncio
import functools
import types
import weakref
from collections.abc import Coroutine, Generator, Iterable
from typing import Any, TypeVar

import structlog
from structlog.stdlib import BoundLogger

T = TypeVar("T")
F = TypeVar("F", bound=asyncio.Future[Any])

_log: BoundLogger = structlog.get_logger("sluice.tasks")
# Futures whose exception was logged: a task watched by a done callback and then
# cancelled and awaited at cleanup is reported once, not twice.
_logged: weakref.WeakSet[asyncio.Future[Any]] = weakref.WeakSet()


def exception_of(future: asyncio.Future[Any]) -> BaseException | None:
    """The exception a finished `future` ended with; None if pending, cancelled or fine.

    Reading it marks the exception as retrieved, so asyncio does not report it a second
    time ("exception was never retrieved") when the future is collected.
    """
    if not future.done() or future.cancelled():
        return None
    return future.exception()


def log_exception(
    future: asyncio.Future[Any], log: BoundLogger | None = None, event: str = "task_failed"
) -> BaseException | None:
    """Logs the exception a finished `future` ended with, if any, and returns it.

    A future is logged once however often this is called for it.

    Args:
        future: a done task or future (a done callback's argument).
        log: the logger, with its context bound; a module logger by default.
        event: the log event.
    """
    exc = exception_of(future)
    if exc is not None and future not in _logged:
        _logged.add(future)
        name = future.get_name() if isinstance(future, asyncio.Task) else repr(future)
        (log or _log).error(event, task=name, error=repr(exc), exc_info=exc)
    return exc


async def cancel_and_wait(
    tasks: Iterable[F],
    *,
    log: BoundLogger | None = None,
    timeout_s: float | None = None,
) -> set[F]:
    """Cancels `tasks`, waits for them to exit and logs any exception they ended with.

    Without a timeout this keeps waiting if the caller is cancelled meanwhile, then
    re-raises the `CancelledError`: no task is left running behind the caller's back.
    The tasks are not cancelled a second time, so their own cleanup (a close handshake,
    bounded by its own timeout) is not cut short.

    Args:
        tasks: the tasks to stop; ones already done are only checked for an exception.
        log: where an exception goes, with its context bound; a module logger by default.
        timeout_s: the longest to wait; None waits for every task.

    Returns:
        The tasks still running after `timeout_s` (e.g. a cleanup stuck on I/O).
    """
    pending = set(tasks)
    if not pending:
        return set()
    for task in pending:
        task.cancel()
    cancelled: asyncio.CancelledError | None = None
    while True:
        try:
            # `asyncio.wait` never raises the tasks' exceptions: each is checked below.
            done, stuck = await asyncio.wait(pending, timeout=timeout_s)
            break
        except asyncio.CancelledError as exc:
            if timeout_s is not None:
                raise
            cancelled = exc
    for task in done:
        log_exception(task, log)
    if cancelled is not None:
        raise cancelled
    return stuck


async def first_completed(*coros: Coroutine[Any, Any, T], log: BoundLogger | None = None) -> T:
    """Runs `coros` as tasks and returns the result of the first to finish.

    The others are cancelled and awaited before this returns. If the first one raised,
    its exception is re-raised here instead of being lost with the task; an exception of
    any other task is logged. When several finish in the same loop iteration, the
    earliest in argument order is the first.

    If the caller is cancelled, every task is cancelled and awaited, and the
    `CancelledError` propagates.

    Args:
        coros: the coroutines; each becomes a task named after its function.
        log: where the other tasks' exceptions go, with the caller's context bound; a
            module logger by default.

    Raises:
        ValueError: no coroutine was given.
        BaseException: whatever the first task to finish raised.
    """
    if not coros:
        raise ValueError("first_completed needs at least one coroutine")
    tasks = [asyncio.create_task(coro, name=_name_of(coro)) for coro in coros]
    first: asyncio.Task[T] | None = None
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        first = next(task for task in tasks if task in done)
    finally:
        # Also when the caller is cancelled: no task outlives this call.
        await cancel_and_wait([task for task in tasks if task is not first], log=log)
    return first.result()


def _name_of(coro: Coroutine[Any, Any, Any]) -> str | None:
    # A coroutine carries its function's qualified name ("EgressPipeline._send"), so a
    # logged task failure points at the code rather than at "Task-7".
    name = getattr(coro, "__qualname__", None)
    return name if isinstance(name, str) else None


def run_eagerly(coro: Coroutine[Any, Any, Any], *, log: BoundLogger | None = None) -> None:
    """Runs `coro` now, in the caller's stack, as far as it goes without waiting.

    For per-packet handlers that are coroutines but almost never wait: most packets cost
    a call, not a task and a turn of the loop (what Python 3.12's eager tasks do). If
    the coroutine does wait, it continues in a task of its own, owned here until it
    ends; its result is dropped and any exception, now or later, is logged.
    """
    try:
        waiting_on = coro.send(None)
    except StopIteration:
        return
    except Exception as exc:
        (log or _log).error("eager_call_failed", error=repr(exc), exc_info=exc)
        return
    task = asyncio.get_running_loop().create_task(_continue(coro, waiting_on))
    _eager_tasks.add(task)
    task.add_done_callback(functools.partial(_eager_task_done, coro))


_eager_tasks: set[asyncio.Task[Any]] = set()  # the loop keeps only weak references


def _eager_task_done(coro: Coroutine[Any, Any, Any], task: asyncio.Task[Any]) -> None:
    _eager_tasks.discard(task)
    if task.cancelled() and getattr(coro, "cr_frame", None) is not None:
        # Cancelled before its first step, the task never handed the cancellation on.
        try:
            coro.throw(asyncio.CancelledError())
        except (asyncio.CancelledError, StopIteration):
            pass
        except Exception as exc:
            _log.error("eager_call_failed", error=repr(exc), exc_info=exc)
        finally:
            coro.close()
    log_exception(task, event="eager_call_failed")


async def _continue(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Any:
    return await _resume(coro, waiting_on)


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], waiting_on: Any) -> Generator[Any, Any, Any]:
    """Continues a started coroutine inside a task: hands what it waits on (a future, or
    None for a bare yield) to the task, and the task's wake-ups back to it, as
    `yield from` does for a coroutine it started itself."""
    while True:
        try:
            sent = yield waiting_on
        except BaseException as exc:  # cancellation and errors go to the coroutine
            try:
                waiting_on = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting_on = coro.send(sent)
            except StopIteration as stop:
                return stop.value
