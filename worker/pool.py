"""A worker host: a pool of RQ worker processes, each forking one pipeline per adapter.

RQ's `WorkerPool` supervises the processes (respawning dead ones); we add three things:
heavy imports and `gc.freeze()` before forking so every pipeline shares those pages,
SIGTERM forwarded to running pipelines so a drain closes adapters cleanly, and the reaper,
run from the supervisor's loop.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from typing import Any

import structlog
from redis.exceptions import RedisError
from rq import Queue, Worker
from rq.worker_pool import WorkerPool

from sluice.config import Settings, get_settings
from sluice.log import configure_logging
from sluice.redisconn import sync_client
from worker.lineage import die_with_parent
from worker.reaper import Reaper

log = structlog.get_logger("sluice.worker")


def preload_media_stack() -> None:
    """Imports what pipelines use, so forked processes share it instead of loading it."""
    import aiortc  # noqa: F401
    import av  # noqa: F401
    import numpy  # noqa: F401
    import websockets.asyncio.client  # noqa: F401

    import worker.jobs
    import worker.pipelines.egress_audio
    import worker.pipelines.egress_jpeg
    import worker.pipelines.ingest  # noqa: F401


class AdapterWorker(Worker):
    """An RQ worker whose jobs are adapters: long-lived, stopped by signal, never retried."""

    def handle_warm_shutdown_request(self) -> None:
        # RQ waits for the job to finish, which for an adapter is never: tell the
        # pipeline to close with reason `shutdown`, then RQ's wait is short.
        if self.horse_pid:
            self.kill_horse(sig=signal.SIGTERM)

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
    connection = sync_client(settings)
    queue = Queue(settings.queue_name, connection=connection)
    worker = AdapterWorker([queue], name=name, connection=connection)
    worker.work(with_scheduler=False, logging_level="WARNING")


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
        self._reaper = Reaper(connection, settings)
        self._next_reap = 0.0

    def get_worker_process(
        self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO"
    ) -> Any:
        from multiprocessing import get_context

        return get_context("fork").Process(
            target=_run_worker, args=(name, self.settings), name=f"sluice-worker {name}"
        )

    def check_workers(self, respawn: bool = True) -> None:
        super().check_workers(respawn=respawn)
        self._reap()

    def _reap(self) -> None:
        now = time.monotonic()
        if now < self._next_reap:
            return
        self._next_reap = now + self.settings.reap_interval_s
        try:
            self._reaper.reap_once()
        except RedisError as exc:
            log.warning("reap_failed", error=str(exc))


def run_pool(settings: Settings | None = None) -> None:
    """`sluice worker`: runs the pool until SIGTERM/SIGINT, then drains."""
    settings = settings or get_settings()
    configure_logging(settings.log_format, settings.log_level, process="worker")
    preload_media_stack()
    gc.freeze()  # forked children then never copy the parent's objects by touching them
    log.info(
        "worker_pool_starting",
        processes=settings.worker_processes,
        pid=os.getpid(),
        queue=settings.queue_name,
    )
    AdapterWorkerPool(settings).start(burst=False, logging_level="WARNING")
    log.info("worker_pool_stopped")
