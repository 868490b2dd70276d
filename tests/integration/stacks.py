"""Which `stack` a test gets: the module's shared one, or one of its own.

Starting an SFU, an API and a worker pool takes seconds, so the tests of a module that
leave the stack as they found it share one. A test gets a stack of its own, on a freshly
flushed Redis, when it says so: `@pytest.mark.workers(n, **settings)` (a pool size or
settings of its own) or `@pytest.mark.own_stack` (it kills or stops one of the stack's
processes, or counts what the API process counted since it started). At most one stack
runs at a time: its workers take jobs from the one queue every stack uses.

Between two tests on the shared stack, every adapter the first left open is closed and the
pool waits until every worker is idle again; Sluice's adapter records, totals and usage
are deleted, so the next test starts from empty counters. A shared stack that a test
disturbed anyway (a process died, a worker was replaced, it would not settle) is
stopped; the next test gets a fresh one.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import redis
from rq import Queue, Worker

from sluice.state import keys
from tests.integration.helpers import Stack, start_stack

SHARED_PROCESSES = 3
SETTLE_TIMEOUT_S = 15.0
LOGS = ("api.log", "worker.log", "sfu.log")
# Sluice's own per-adapter state and counters; RQ's keys, the SFU's session registry and
# the reapers' bookkeeping belong to the running processes and stay.
ADAPTER_KEYS = (keys.adapter("*"), f"{keys.PREFIX}:app:*", f"{keys.PREFIX}:usage:*", keys.METRICS)
OPEN = (keys.HEARTBEATS, keys.PENDING, keys.RESUMING)


def needs_own_stack(item: pytest.Item) -> bool:
    return any(item.iter_markers("workers")) or any(item.iter_markers("own_stack"))


def stack_settings(item: pytest.Item) -> tuple[int, dict[str, object]]:
    """The pool size and SLUICE_* overrides of `@pytest.mark.workers(n, **settings)`."""
    marker = item.get_closest_marker("workers")
    if marker is None:
        return SHARED_PROCESSES, {}
    return marker.args[0], dict(marker.kwargs)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Within each module, the tests that share its stack first: it starts once."""
    first_seen: dict[Path, int] = {}
    for index, item in enumerate(items):
        first_seen.setdefault(item.path, index)
    uses_own = {
        id(item): "stack" in getattr(item, "fixturenames", ()) and needs_own_stack(item)
        for item in items
    }
    items.sort(key=lambda item: (first_seen[item.path], uses_own[id(item)]))


@dataclass
class Running:
    stack: Stack
    log_dir: Path
    shared_by: object | None  # the module sharing it; None: one test's own
    workers: frozenset[str] = frozenset()
    log_offsets: dict[str, int] = field(default_factory=dict)


class StackPool:
    """The session's one running stack, started, shared, settled and stopped here."""

    def __init__(self, redis_url: str) -> None:
        self.redis_url = redis_url
        self.conn = redis.Redis.from_url(redis_url, decode_responses=True)
        self.running: Running | None = None
        self.started = 0
        self.shared_tests = 0

    def own(self, processes: int, overrides: dict[str, object], log_dir: Path) -> Stack:
        self.release()
        return self._start(processes, overrides, log_dir, shared_by=None).stack

    def shared(self, module: object, log_dir: Path) -> Stack:
        running = self.running
        if running is None or running.shared_by is not module or not self._intact(running):
            self.release()
            running = self._start(SHARED_PROCESSES, {}, log_dir, shared_by=module)
        running.log_offsets = {name: _size(log_dir / name) for name in LOGS}
        self.shared_tests += 1
        return running.stack

    def after_shared_test(self) -> None:
        """Leaves the shared stack as the next test expects it, or stops it."""
        running = self.running
        if running is None or running.shared_by is None:
            return
        if not (self._intact(running) and self._settle(running)):
            self.release()

    def release(self) -> None:
        if self.running is not None:
            self.running.stack.stop()
            self.running = None

    def flush(self) -> None:
        """An empty Redis, for a test of its own; no stack may be using it."""
        self.release()
        self.conn.flushall()

    def print_logs(self, log_dir: Path) -> None:
        """The stack's logs since the test began; pytest shows them when it failed."""
        running = self.running
        offsets = running.log_offsets if running and running.log_dir == log_dir else {}
        for name in LOGS:
            log = log_dir / name
            if log.exists():
                with log.open("rb") as stream:
                    stream.seek(offsets.get(name, 0))
                    text = stream.read().decode(errors="replace")
                print(f"--- {name}\n{text[-6000:]}")

    def _start(
        self, processes: int, overrides: dict[str, object], log_dir: Path, shared_by: object
    ) -> Running:
        self.conn.flushall()
        stack = start_stack(self.redis_url, processes, log_dir, **overrides)
        self.started += 1
        self.running = Running(stack, log_dir, shared_by, self._worker_names(stack))
        return self.running

    def _worker_names(self, stack: Stack) -> frozenset[str]:
        queue = Queue(stack.env.get("SLUICE_QUEUE_NAME", "sluice-adapters"), connection=self.conn)
        return frozenset(w.name for w in Worker.all(queue=queue))

    def _intact(self, running: Running) -> bool:
        """Every process still up, and no worker replaced since the stack started."""
        procs = (running.stack.api, running.stack.worker, running.stack.sfu)
        if any(proc.poll() is not None for proc in procs):
            return False
        return self._worker_names(running.stack) == running.workers

    def _settle(self, running: Running) -> bool:
        """Closes every adapter left open and waits for idle workers; then no records."""
        stack = running.stack
        apps = dict(pair.split(":", 1) for pair in stack.env["SLUICE_APPS"].split(","))
        for app, secret in apps.items():
            live = sorted(self.conn.smembers(keys.app_live(app)))
            if live:
                httpx.post(
                    f"{stack.base_url}/v1/apps/{app}/adapters/websocket/close",
                    json={"tracks": [{"adapterId": adapter_id} for adapter_id in live]},
                    headers={"Authorization": f"Bearer {secret}"},
                    timeout=10,
                )
        queue = Queue(stack.env.get("SLUICE_QUEUE_NAME", "sluice-adapters"), connection=self.conn)

        def settled() -> bool:
            workers = Worker.all(queue=queue)
            return (
                queue.count == 0
                and not any(self.conn.zcard(key) for key in OPEN)
                and len(workers) == len(running.workers)
                and all(w.get_state() == "idle" for w in workers)
            )

        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while not settled():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        for pattern in ADAPTER_KEYS:
            doomed = list(self.conn.scan_iter(pattern))
            if doomed:
                self.conn.delete(*doomed)
        return True


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


_POOL = pytest.StashKey[StackPool]()


@pytest.fixture(scope="session")
def stack_pool(redis_url: str, pytestconfig: pytest.Config) -> Iterator[StackPool]:
    pool = StackPool(redis_url)
    pytestconfig.stash[_POOL] = pool
    yield pool
    pool.release()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    pool = terminalreporter.config.stash.get(_POOL, None)
    if pool is not None and pool.started:
        terminalreporter.write_line(
            f"integration stacks started: {pool.started}, "
            f"{pool.shared_tests} tests ran on a shared one"
        )


@pytest.fixture(scope="module")
def module_log_dir(
    stack_pool: StackPool, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """Where the module's shared stack logs; the stack goes with the module."""
    yield tmp_path_factory.mktemp("shared-stack")
    stack_pool.release()
