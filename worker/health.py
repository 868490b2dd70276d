"""The worker host's `/healthz`, `/readyz` and `/metrics`, served by a child of the supervisor.

Why a child process. The supervisor forks worker processes again and again (RQ respawns
dead ones), and forking a process that runs threads risks children inheriting a lock some
thread held, so the supervisor stays single-threaded: it forks one small health process
(uvicorn + Starlette) before the workers and never serves HTTP itself. The child binds the
port itself, so no later worker inherits the listening socket and keeps it open after the
child is gone.

Why shared memory for what only the supervisor knows (its live worker names, respawns,
reaper counts, draining). The supervisor creates one anonymous `MAP_SHARED` mapping before
forking; it writes, the child reads, with no lock, thread or pipe to fill. Counters are
single aligned 8-byte stores; the name list is guarded by a sequence number (odd while
being rewritten) and a torn read costs at most one scrape's accuracy. A Redis hash per host
would do too, but it puts a Redis round trip into the supervisor's loop, which must go on
respawning when Redis is slow or gone, and it loses the counters' scrape during exactly the
Redis outages worth watching. Liveness needs no heartbeat either: the child's parent *is*
the supervisor (`os.getppid()`), and the child dies with it (`PR_SET_PDEATHSIG`).
"""

from __future__ import annotations

import contextlib
import mmap
import os
import signal
import socket
import sys
import time
from collections import Counter as Tally
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from typing import Any

import redis
import structlog
import uvicorn
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry
from rq import Queue, Worker
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from sluice.config import Settings
from sluice.log import configure_logging
from worker.lineage import die_with_parent

log = structlog.get_logger("sluice.worker.health")

CHECK_TIMEOUT_S = 1.0  # each Redis call of a probe gives up after this
STOP_TIMEOUT_S = 3.0  # the supervisor waits this long for the child after SIGTERM
RESTART_AFTER_S = 5.0  # a health child crashing in a loop is restarted at most this often
EXIT_BIND_FAILED = 3  # the child's exit code when it could not listen: not restarted
NAME_BYTES = 64  # room per worker name; RQ names pool workers uuid4().hex (32 characters)
UNKNOWN = "unknown"  # state of a live worker process RQ has no record of (yet)

_SEQ, _RESPAWNS, _LOST, _WITHDRAWN, _DRAINING, _COUNT, _RESUMED = range(7)
_HEADER_BYTES = 7 * 8


@dataclass(frozen=True, slots=True)
class Facts:
    """What the supervisor published, as read at one probe."""

    workers: frozenset[str]  # names of the worker processes it believes alive
    respawns: int
    reaper_lost: int
    reaper_withdrawn: int
    reaper_resumed: int
    draining: bool


class HostFacts:
    """Supervisor-only facts in memory shared with the health child (one writer, one reader).

    Args:
        capacity: most worker names it holds (the pool size).
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._mem = mmap.mmap(-1, _HEADER_BYTES + capacity * NAME_BYTES)  # shared, anonymous
        self._words = memoryview(self._mem)[:_HEADER_BYTES].cast("Q")
        self._published: frozenset[str] = frozenset()

    def count_respawns(self, count: int) -> None:
        self._words[_RESPAWNS] += count

    def count_reaped(self, lost: int, withdrawn: int, resumed: int = 0) -> None:
        self._words[_LOST] += lost
        self._words[_WITHDRAWN] += withdrawn
        self._words[_RESUMED] += resumed

    def set_draining(self) -> None:
        self._words[_DRAINING] = 1

    def set_workers(self, names: Iterable[str]) -> None:
        current = frozenset(names)
        if current == self._published:
            return
        self._published = current
        packed = b"".join(
            name.encode()[:NAME_BYTES].ljust(NAME_BYTES, b"\0")
            for name in sorted(current)[: self._capacity]
        )
        self._words[_SEQ] += 1  # odd: a reader retries
        self._mem[_HEADER_BYTES : _HEADER_BYTES + len(packed)] = packed
        self._words[_COUNT] = len(packed) // NAME_BYTES
        self._words[_SEQ] += 1

    def read(self) -> Facts:
        raw = b""
        for _ in range(100):  # the writer holds the sequence odd for microseconds
            seq = self._words[_SEQ]
            count = min(self._words[_COUNT], self._capacity)
            raw = self._mem[_HEADER_BYTES : _HEADER_BYTES + count * NAME_BYTES]
            if seq % 2 == 0 and self._words[_SEQ] == seq:
                break
        names = (raw[i : i + NAME_BYTES] for i in range(0, len(raw), NAME_BYTES))
        return Facts(
            workers=frozenset(n.rstrip(b"\0").decode(errors="replace") for n in names),
            respawns=self._words[_RESPAWNS],
            reaper_lost=self._words[_LOST],
            reaper_withdrawn=self._words[_WITHDRAWN],
            reaper_resumed=self._words[_RESUMED],
            draining=bool(self._words[_DRAINING]),
        )


@dataclass(frozen=True, slots=True)
class Survey:
    """One probe's view of this host: the supervisor's facts plus RQ's records."""

    facts: Facts
    supervisor_alive: bool
    redis_error: str | None  # None: Redis answered PING within CHECK_TIMEOUT_S
    states: dict[str, str]  # this pool's live worker → its RQ state, or UNKNOWN

    @property
    def tally(self) -> Tally[str]:
        return Tally(self.states.values())


def readiness(survey: Survey, configured: int) -> tuple[int, dict[str, Any]]:
    """The `/readyz` status code and body. A host whose every process is busy is ready:
    capacity is a metric, not readiness."""
    tally = survey.tally
    registered = sum(n for state, n in tally.items() if state != UNKNOWN)
    if survey.facts.draining:
        workers = "draining: the pool is stopping"
    elif survey.redis_error is not None:
        workers = "unknown: Redis did not answer"
    elif registered == 0:
        workers = f"none of this host's {len(survey.states)} worker processes is registered"
    else:
        workers = "ok"
    checks: dict[str, Any] = {
        "supervisor": "ok" if survey.supervisor_alive else "the supervisor process is gone",
        "redis": survey.redis_error or "ok",
        "workers": workers,
        "idle": tally["idle"],
        "busy": tally["busy"],
        "configured": configured,
    }
    ready = all(checks[name] == "ok" for name in ("supervisor", "redis", "workers"))
    body = {"status": "ready" if ready else "unready", "checks": checks}
    return (200 if ready else 503), body


def host_families(survey: Survey, configured: int) -> list[Metric]:
    """This host's metric families; idle and busy are always present so neither vanishes."""
    tally = survey.tally
    processes = GaugeMetricFamily(
        "sluice_worker_processes",
        f"This host's live worker processes by RQ state ({UNKNOWN}: not registered in RQ "
        "yet, or Redis unreachable).",
        labels=["state"],
    )
    for state in sorted({"idle", "busy", *tally}):
        processes.add_metric([state], tally[state])
    pool = GaugeMetricFamily(
        "sluice_worker_processes_configured", "Worker processes this host's pool keeps running."
    )
    pool.add_metric([], configured)
    facts = survey.facts
    counters = (
        ("sluice_worker_respawns", "Worker processes respawned after one died.", facts.respawns),
        (
            "sluice_reaper_lost",
            "Adapters this host's reaper closed as worker_lost (each adapter by one host).",
            facts.reaper_lost,
        ),
        (
            "sluice_reaper_withdrawn",
            "Creates nobody claimed that this host's reaper withdrew.",
            facts.reaper_withdrawn,
        ),
        (
            "sluice_reaper_resumed",
            "Egress adapters whose process was lost that this host's reaper queued to resume.",
            facts.reaper_resumed,
        ),
    )
    families: list[Metric] = [processes, pool]
    for name, doc, value in counters:
        counter = CounterMetricFamily(name, doc)
        counter.add_metric([], value)
        families.append(counter)
    return families


class _HostCollector:
    def __init__(self, survey: Callable[[], Survey], configured: int) -> None:
        self._survey = survey
        self._configured = configured

    def collect(self) -> Iterator[Metric]:
        return iter(host_families(self._survey(), self._configured))


class HealthApp:
    """The child's HTTP endpoints. `/readyz` and `/metrics` are sync: Starlette runs them in
    its thread pool, where RQ's blocking API belongs (this process never forks)."""

    def __init__(self, settings: Settings, facts: HostFacts, supervisor_pid: int) -> None:
        self._facts = facts
        self._supervisor_pid = supervisor_pid
        self._configured = settings.worker_processes
        connection = redis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=CHECK_TIMEOUT_S,
            socket_timeout=CHECK_TIMEOUT_S,
            retry=Retry(NoBackoff(), 0),
        )
        self._connection = connection
        self._queue = Queue(settings.queue_name, connection=connection)
        self.registry = CollectorRegistry()
        ProcessCollector(pid=lambda: supervisor_pid, registry=self.registry)
        self.registry.register(_HostCollector(self.survey, self._configured))

    def survey(self) -> Survey:
        facts = self._facts.read()
        registered: dict[str, str] = {}
        error = None
        try:
            self._connection.ping()
            for worker in Worker.all(queue=self._queue):
                registered[worker.name] = str(worker.get_state())
        except RedisError as exc:
            error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            registered = {}
        return Survey(
            facts=facts,
            supervisor_alive=self._supervisor_alive(),
            redis_error=error,
            # A killed worker's registration outlives it (until its key's TTL): only the
            # names the supervisor still runs count.
            states={name: registered.get(name, UNKNOWN) for name in facts.workers},
        )

    def _supervisor_alive(self) -> bool:
        return os.getppid() == self._supervisor_pid

    async def healthz(self, _: Request) -> JSONResponse:
        if self._supervisor_alive():
            return JSONResponse({"status": "ok"})
        return JSONResponse({"status": "supervisor_gone"}, status_code=503)

    def readyz(self, _: Request) -> JSONResponse:
        status, body = readiness(self.survey(), self._configured)
        return JSONResponse(body, status_code=status)

    def metrics(self, _: Request) -> Response:
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)

    def asgi(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/healthz", self.healthz),
                Route("/readyz", self.readyz),
                Route("/metrics", self.metrics),
            ]
        )


class _Server(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        # The supervisor stops us with SIGTERM; Ctrl+C is the supervisor's to handle.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self.handle_exit)
        yield


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family)


def _serve(settings: Settings, facts: HostFacts, supervisor_pid: int) -> None:
    """The health child's whole life (a `fork` target)."""
    # Outside signals go to the supervisor only (a process manager may signal our group).
    os.setpgrp()
    # Nothing to drain here; vanishing at once frees the port for a restarted supervisor.
    die_with_parent(signal.SIGKILL)
    if os.getppid() != supervisor_pid:  # it died before prctl could watch it
        sys.exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_format, settings.log_level, process="worker-health")
    host, port = settings.worker_health_host, settings.worker_health_port
    try:
        sock = _listen(host, port)
    except OSError as exc:
        log.error(
            "worker_health_bind_failed",
            host=host,
            port=port,
            error=str(exc),
            consequence="the worker host runs on without /healthz, /readyz and /metrics",
        )
        sys.exit(EXIT_BIND_FAILED)
    log.info("worker_health_listening", host=host, port=sock.getsockname()[1])
    app = HealthApp(settings, facts, supervisor_pid).asgi()
    config = uvicorn.Config(
        app, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=1
    )
    _Server(config).run(sockets=[sock])


class HealthChild:
    """The supervisor's handle on its health server process.

    Args:
        settings: `worker_health_port` 0 means no child at all.
        facts: the shared memory the supervisor writes and the child reads.
    """

    def __init__(self, settings: Settings, facts: HostFacts) -> None:
        self._settings = settings
        self._facts = facts
        self._process: BaseProcess | None = None
        self._started_at = 0.0

    def start(self) -> None:
        """Forks the child; call it while the supervisor runs no thread."""
        if not self._settings.worker_health_port:
            return
        process = get_context("fork").Process(
            target=_serve,
            args=(self._settings, self._facts, os.getpid()),
            name="sluice-worker-health",
            daemon=True,  # multiprocessing's exit handler terminates it if stop() is skipped
        )
        process.start()
        self._process = process
        self._started_at = time.monotonic()

    def check(self) -> None:
        """Restarts a child that died on its own; one that could not listen has said why."""
        process = self._process
        if process is None or process.is_alive():
            return
        if process.exitcode == EXIT_BIND_FAILED:
            self._process = None
            return
        if time.monotonic() < self._started_at + RESTART_AFTER_S:
            return
        log.warning("worker_health_restarted", exitcode=process.exitcode)
        self.start()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or not process.is_alive():
            return
        process.terminate()
        process.join(STOP_TIMEOUT_S)
        if process.is_alive():
            process.kill()
            process.join()
