"""A worker host: a pool of RQ worker processes, each forking one pipeline per adapter.

RQ's `WorkerPool` supervises the processes (respawning dead ones); we add five things:
heavy imports, a rehearsal of the media code (worker.rehearsal) and `gc.freeze()` before
forking so every pipeline shares those pages,
SIGTERM forwarded to running pipelines so a drain closes adapters cleanly, the reaper,
run from the supervisor's loop, a health server child (worker.health) that the
supervisor feeds through shared memory, and the webhook children (worker.webhooks).

This builds on RQ internals, not its documented API: it overrides `Worker.heartbeat`,
`handle_warm_shutdown_request` and `setup_work_horse_signals`, and `WorkerPool.start_worker`,
`get_worker_process`, `check_workers`, `reap_workers` and `request_stop`; it reads
`horse_pid`, `birth_date`, `key`, `worker_ttl`, `serialize()`, `kill_horse(sig=)`,
`worker_registration.register()`, the pool's `worker_dict` and `handle_dead_worker()`.
An rq upgrade can change
any of them without an error, so pyproject pins rq's minor version and
tests/unit/test_rq_internals.py pins their shapes and that RQ's loops still call them.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
import signal
import time
from typing import Any

import structlog
from redis.exceptions import RedisError
from rq import Queue, Worker, worker_registration
from rq.executions import Execution
from rq.job import Job
from rq.worker_pool import WorkerPool

from sluice.config import Settings, get_settings
from sluice.log import configure_logging
from sluice.media.aiortc_internals import register_codecs
from sluice.state.connection import sync_client
from worker.dial import tls_context
from worker.health import HealthChild, HostFacts
from worker.jobs import prepare_standby
from worker.lineage import die_with_parent
from worker.reaper import Reaper
from worker.rehearsal import rehearse
from worker.standby import Standby, stop_signals_held
from worker.webhooks.processes import WebhookProcesses

log = structlog.get_logger("sluice.worker")

# How often a worker process heartbeats, idle or busy (rq's defaults: every 405 s idle,
# every 30 s busy). `sluice workers`, `rq info` and rq-dashboard show the last beat's age,
# and a worker that died leaves RQ's registry about a minute after its last beat.
WORKER_HEARTBEAT_S = 5


def preload_media_stack() -> None:
    """Imports what pipelines use, so forked processes share it instead of loading it."""
    import aiortc  # noqa: F401
    import av  # noqa: F401
    import numpy  # noqa: F401
    import uvloop  # noqa: F401  (SLUICE_EVENT_LOOP's default)
    import websockets.asyncio.client  # noqa: F401

    import worker.jobs
    import worker.pipelines.egress_audio
    import worker.pipelines.egress_jpeg
    import worker.pipelines.ingest
    import worker.webhooks.delivery  # noqa: F401

    _warm_up_lazy_imports()


# Found with py-spy in pipelines' creates: imported on first use, not by `import httpx`.
_LAZY_MODULES = (
    "anyio._backends._asyncio",
    "anyio.streams.memory",
    "anyio.streams.tls",
    "h11",
    "httpcore",
    "cryptography.hazmat.primitives.serialization",
    "OpenSSL.crypto",
)


def _warm_up_lazy_imports() -> None:
    """Runs, once, what would otherwise import modules inside every pipeline's create.

    httpx imports its transport (httpcore, h11, anyio's backend) on the first client or
    request, and aiortc its crypto backends on the first certificate: measured at ~40 %
    of a pipeline's CPU time before `active`. Done here, forked pipelines share it.
    """
    import httpx
    from aiortc.rtcdtlstransport import RTCCertificate

    for name in _LAZY_MODULES:
        importlib.import_module(name)
    RTCCertificate.generateCertificate()
    httpx.AsyncClient(verify=tls_context())  # builds the transport; never used, nothing open


class AdapterWorker(Worker):
    """An RQ worker whose jobs are adapters: long-lived, stopped by signal, never retried.

    With `standby` on, its next horse is forked while it waits for a job (worker.standby).
    """

    standby = False
    _standby: Standby | None = None

    def dequeue_job_and_maintain_ttl(
        self, timeout: int | None, max_idle_time: int | None = None
    ) -> tuple[Job, Queue] | None:
        if self.standby and self._standby is None:
            with stop_signals_held():  # a stop is handled once the standby is ours to end
                self._standby = Standby.fork(self._take_over, prepare=self._prepare_standby)
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def fork_work_horse(self, job: Job, queue: Queue) -> None:
        standby, self._standby = self._standby, None
        execution = self.execution
        if (
            standby is None
            or execution is None
            or not standby.hand_over(f"{job.id} {execution.id}")
        ):
            super().fork_work_horse(job, queue)
            return
        # What RQ's fork_work_horse does in the worker once it has forked.
        os.environ["RQ_WORKER_ID"] = self.name
        os.environ["RQ_JOB_ID"] = job.id
        self._horse_pid = standby.pid
        self.procline(f"Handed over to {standby.pid} at {time.time()}")  # type: ignore[no-untyped-call]

    def _prepare_standby(self) -> None:
        """In the standby: what any horse does first, done while there is time."""
        with contextlib.suppress(RedisError):
            self.connection.ping()  # the connection Job.fetch and RQ's bookkeeping use
        prepare_standby()

    def _take_over(self, message: str) -> None:
        """In the standby: becomes the horse of the job the worker dequeued meanwhile.

        This process was forked before the dequeue, so it rebuilds what the worker has
        since: the job (from Redis), its queue and the execution the worker registered.
        """
        job_id, execution_id = message.split()
        job = self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
        job.redis_server_version = self.get_redis_server_version()  # type: ignore[no-untyped-call]
        queue = next(q for q in self.queues if q.name == job.origin)
        self.executions[execution_id] = Execution(
            execution_id, job_id, connection=self.connection, worker_name=self.name
        )
        os.environ["RQ_WORKER_ID"] = self.name
        os.environ["RQ_JOB_ID"] = job.id
        self.main_work_horse(job, queue)

    def teardown(self) -> None:
        if self._standby is not None:
            self._standby.discard()
            self._standby = None
        super().teardown()  # type: ignore[no-untyped-call]

    def handle_warm_shutdown_request(self) -> None:
        # RQ waits for the job to finish, which for an adapter is never: tell the
        # pipeline to close with reason `shutdown`, then RQ's wait is short.
        if self.horse_pid:
            self.kill_horse(sig=signal.SIGTERM)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        # Checked on every beat, busy or idle: rq's own busy-time beat (`maintain_heartbeats`,
        # with a pipeline) recreates a vanished worker hash but not its registry entries.
        if self.birth_date is not None:
            try:
                registered = self.connection.hexists(self.key, "birth")
            except RedisError:
                registered = True  # unreachable: RQ's own call below raises and retries
            if not registered:
                # Redis restarted empty and forgot this worker: without registering again
                # it would be invisible to `rq info`, /readyz and `sluice workers` until
                # it restarted, although it takes jobs.
                with self.connection.pipeline() as pipe:
                    pipe.hset(self.key, mapping=self.serialize())
                    worker_registration.register(self, pipe)
                    pipe.expire(self.key, self.worker_ttl + 60)
                    pipe.execute()
                log.warning("worker_registered_again", worker=self.name)
        super().heartbeat(timeout, pipeline)

    def setup_work_horse_signals(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl+C is for the supervisor
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the runner installs its own


def _run_worker(name: str, settings: Settings) -> None:
    # Only the supervisor takes signals from outside (a process manager signals our
    # whole group): it stops workers one way, in order. Signals racing into a worker
    # from two sides left some blocked in Redis forever.
    os.setpgrp()
    # If the supervisor dies abruptly, drain instead of running on unsupervised.
    die_with_parent(signal.SIGTERM)
    configure_logging(settings.log_format, settings.log_level, process="worker")
    adapter_worker(name, settings).work(with_scheduler=False, logging_level="WARNING")


def adapter_worker(name: str, settings: Settings) -> AdapterWorker:
    """One worker of the pool, beating every `WORKER_HEARTBEAT_S`.

    An idle rq worker beats between two waits for a job, each `worker_ttl - 15` s long;
    a busy one every `job_monitoring_interval` while it waits for its horse.
    """
    connection = sync_client(settings)
    adapter_worker = AdapterWorker(
        [Queue(settings.queue_name, connection=connection)],
        name=name,
        connection=connection,
        worker_ttl=WORKER_HEARTBEAT_S + 15,
        job_monitoring_interval=WORKER_HEARTBEAT_S,
    )
    adapter_worker.standby = settings.worker_standby
    return adapter_worker


class AdapterWorkerPool(WorkerPool):
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        connection = sync_client(settings)
        super().__init__(
            [settings.queue_name],
            connection=connection,
            num_workers=settings.worker_processes,
            worker_class=AdapterWorker,
        )
        self._reaper = Reaper(sync_client(settings, bounded_reads=True), settings)
        self._next_reap = 0.0
        self.facts = HostFacts(settings.worker_processes)
        self._health = HealthChild(settings, self.facts)
        self._webhooks = WebhookProcesses(settings)

    def start(self, burst: bool = False, logging_level: str = "INFO") -> None:
        # Forked before RQ forks the workers, while this process still runs no thread.
        self._health.start()
        self._webhooks.start()
        try:
            super().start(burst=burst, logging_level=logging_level)
        finally:
            # After the drain: the adapters' `closed` events are in the outbox by now, and
            # whatever is not delivered yet waits in Redis for the next dispatcher.
            self._webhooks.stop()
            self._health.stop()

    def request_stop(self, signum: Any = None, frame: Any = None) -> None:
        self.facts.set_draining()
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]

    def start_worker(
        self,
        count: int | None = None,
        burst: bool = True,
        _sleep: float = 0,
        logging_level: str = "INFO",
    ) -> None:
        super().start_worker(count, burst=burst, _sleep=_sleep, logging_level=logging_level)
        self.facts.set_workers(self.worker_dict)

    def reap_workers(self) -> None:
        # rq's own joins each live worker for 0.1 s, so the supervisor's loop (and the
        # reaper, run from it) took 1 s + 0.1 s per pool process a turn: 2.6 s with 16,
        # and a lost host's egress adapters resumed that much later. `is_alive()` reaps
        # a dead process without waiting on the living.
        for data in list(self.worker_dict.values()):
            if not data.process.is_alive():
                self.handle_dead_worker(data)
        self.facts.set_workers(self.worker_dict)

    def get_worker_process(
        self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO"
    ) -> Any:
        from multiprocessing import get_context

        return get_context("fork").Process(
            target=_run_worker, args=(name, self.settings), name=f"sluice-worker {name}"
        )

    def check_workers(self, respawn: bool = True) -> None:
        before = set(self.worker_dict)
        super().check_workers(respawn=respawn)
        # Names are unique: any new one was spawned to replace a process that died.
        respawned = len(self.worker_dict.keys() - before)
        if respawned:
            self.facts.count_respawns(respawned)
            log.warning("worker_processes_respawned", count=respawned)
        self._health.check()
        self._webhooks.check()
        self._reap()

    def _reap(self) -> None:
        now = time.monotonic()
        if now < self._next_reap:
            return
        self._next_reap = now + self.settings.reap_interval_s
        try:
            outcome = self._reaper.reap_once()
        except RedisError as exc:
            log.warning("reap_failed", error=str(exc))
            return
        self.facts.count_reaped(len(outcome.lost), len(outcome.withdrawn), len(outcome.resumed))


def prepare_to_fork(settings: Settings) -> None:
    """What the pool's parent does before it forks anything: whatever its children would
    each do alike is done once here, where they share it."""
    configure_logging(settings.log_format, settings.log_level, process="worker")
    preload_media_stack()
    register_codecs()  # before forking: every pipeline's peer connections then agree
    try:
        tls_context(settings.endpoint_ca_bundle)  # wss:// endpoints' trust, shared
    except OSError as exc:
        log.error("endpoint_ca_bundle_unreadable", error=str(exc))  # each wss:// dial says so
    rehearse(settings)  # the media code warm before forking: less for each pipeline to copy
    gc.collect()  # what the rehearsal left is garbage: not frozen into every pipeline
    gc.freeze()  # forked children then never copy the parent's objects by touching them


def run_pool(settings: Settings | None = None) -> None:
    """`sluice worker`: runs the pool until SIGTERM/SIGINT, then drains."""
    settings = settings or get_settings()
    prepare_to_fork(settings)
    log.info(
        "worker_pool_starting",
        processes=settings.worker_processes,
        pid=os.getpid(),
        queue=settings.queue_name,
    )
    AdapterWorkerPool(settings).start(burst=False, logging_level="WARNING")
    log.info("worker_pool_stopped")
