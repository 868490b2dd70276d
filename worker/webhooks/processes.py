"""The worker host's webhook processes: one dispatcher and the delivery workers.

They are children of the pool's supervisor, forked before the adapter workers (like the
health child), and take no adapter slot: the delivery workers are RQ workers of their own
queue (`SLUICE_WEBHOOK_QUEUE_NAME`), so `rq info` lists them under it and `sluice
workers` (the adapters queue) does not. Each runs one delivery at a time in its own
process (`SimpleWorker`: no fork per job); one of them also runs RQ's scheduler, which
puts retries back on the queue when their backoff is over. A dead webhook therefore holds
up other apps' deliveries at most ANSWER_TIMEOUT_S per attempt and per process, and never
an adapter, whose transitions only append to the outbox.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import time
import uuid
from multiprocessing import get_context
from multiprocessing.process import BaseProcess
from types import FrameType

import structlog
from rq import Queue, SimpleWorker

from sluice.config import Settings
from sluice.log import configure_logging
from sluice.state.connection import sync_client
from worker.lineage import die_with_parent
from worker.webhooks.delivery import DeliveryFailed
from worker.webhooks.dispatcher import Dispatcher

log = structlog.get_logger("sluice.webhooks")

STOP_TIMEOUT_S = 8.0  # a delivery in flight may take its whole answer timeout to finish
RESTART_AFTER_S = 5.0  # a child dying in a loop is restarted at most this often


def _detach(settings: Settings, process: str) -> None:
    # Outside signals go to the supervisor only; it stops its children itself.
    os.setpgrp()
    die_with_parent(signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    configure_logging(settings.log_format, settings.log_level, process=process)


def _dispatch_forever(settings: Settings) -> None:
    """The dispatcher's whole life (a `fork` target)."""
    _detach(settings, "webhook-dispatcher")
    stopping = False

    def stop(_signum: int, _frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    consumer = f"{socket.gethostname()}:{os.getpid()}"
    Dispatcher(sync_client(settings), settings, consumer).run(lambda: stopping)


class _FailedAttempts(logging.Filter):
    """Drops RQ's traceback of a failed attempt: the job logs one line of its own
    (`webhook_attempt_failed`), and a dead webhook would otherwise print one per try."""

    def filter(self, record: logging.LogRecord) -> bool:
        return DeliveryFailed.__name__ not in record.getMessage()


def _deliver_forever(settings: Settings) -> None:
    """A delivery worker's whole life (a `fork` target); SIGTERM lets its job finish."""
    _detach(settings, "webhook-delivery")
    logging.getLogger("rq.worker").addFilter(_FailedAttempts())
    connection = sync_client(settings)
    queue = Queue(settings.webhook_queue_name, connection=connection)
    worker = SimpleWorker([queue], name=f"webhooks-{uuid.uuid4().hex}", connection=connection)
    worker.work(with_scheduler=True, logging_level="WARNING")
    sys.exit(0)


class WebhookProcesses:
    """The supervisor's handle on its webhook children: started only when some app has a
    webhook (`SLUICE_WEBHOOKS`) and `SLUICE_WEBHOOK_PROCESSES` is above 0."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._wanted = settings.webhook_processes if settings.app_webhooks else 0
        self._children: dict[str, BaseProcess | None] = {}
        self._started_at: dict[str, float] = {}

    def start(self) -> None:
        """Forks the children; call it while the supervisor runs no thread."""
        if not self._wanted:
            return
        self._spawn("dispatcher")
        for number in range(self._wanted):
            self._spawn(f"delivery-{number}")
        log.info("webhook_processes_started", delivery=self._wanted)

    def check(self) -> None:
        """Restarts children that died (not more often than RESTART_AFTER_S each)."""
        for role, process in self._children.items():
            if process is None or process.is_alive():
                continue
            if time.monotonic() < self._started_at[role] + RESTART_AFTER_S:
                continue
            log.warning("webhook_process_restarted", role=role, exitcode=process.exitcode)
            self._spawn(role)

    def stop(self) -> None:
        children = [p for p in self._children.values() if p is not None and p.is_alive()]
        self._children = {}
        for process in children:
            process.terminate()
        deadline = time.monotonic() + STOP_TIMEOUT_S
        for process in children:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()

    def _spawn(self, role: str) -> None:
        target = _dispatch_forever if role == "dispatcher" else _deliver_forever
        process = get_context("fork").Process(
            target=target, args=(self._settings,), name=f"sluice-webhook-{role}", daemon=False
        )
        process.start()
        self._children[role] = process
        self._started_at[role] = time.monotonic()
