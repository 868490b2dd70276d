"""Webhook deliveries (E7) on `/metrics`: cluster-wide figures, read from Redis at scrape time.

Deliveries run in the worker hosts' delivery processes, which count each attempt's
outcome in `sluice:metrics` (like the adapters' counters); what waits is read from the
outbox stream and the delivery queue's RQ registries. Identical on every API replica:
aggregate with `max`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from prometheus_client import generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from rq import Queue

from api.metrics import Families
from sluice.state import keys
from sluice.state.outbox import DeliveryOutcome, metric_field


@dataclass(frozen=True, slots=True)
class WebhookBacklog:
    outbox: int  # events no dispatcher has taken yet
    queued: int  # deliveries waiting for a delivery process
    scheduled: int  # failed attempts waiting out their backoff
    running: int  # attempts in progress
    failed: int  # deliveries that used every attempt (kept for inspection)


async def read_backlog(redis: Redis, rq_redis: SyncRedis, queue_name: str) -> WebhookBacklog:
    outbox = int(await redis.xlen(keys.WEBHOOK_OUTBOX))
    # rq's API is synchronous: its registries are read in a thread, off the event loop.
    queued, scheduled, running, failed = await asyncio.to_thread(
        _read_registries, rq_redis, queue_name
    )
    return WebhookBacklog(outbox, queued, scheduled, running, failed)


def _read_registries(rq_redis: SyncRedis, queue_name: str) -> tuple[int, int, int, int]:
    queue = Queue(queue_name, connection=rq_redis)
    return (
        queue.count,
        queue.scheduled_job_registry.count,
        queue.started_job_registry.count,
        queue.failed_job_registry.count,
    )


def webhook_families(backlog: WebhookBacklog, totals: dict[str, int]) -> list[Metric]:
    deliveries = CounterMetricFamily(
        "sluice_webhook_deliveries",
        "Webhook delivery attempts by outcome: `delivered` (2xx), `retried` (failed, "
        "another attempt scheduled), `failed` (failed, no attempt left).",
        labels=["outcome"],
    )
    for outcome in DeliveryOutcome:
        deliveries.add_metric([outcome.value], totals.get(metric_field(outcome), 0))
    pending = GaugeMetricFamily(
        "sluice_webhook_pending",
        "Lifecycle events not delivered yet, by stage: `outbox` (not dispatched), `queued`, "
        "`scheduled` (waiting out a backoff), `running`.",
        labels=["stage"],
    )
    for stage in ("outbox", "queued", "scheduled", "running"):
        pending.add_metric([stage], getattr(backlog, stage))
    failed = GaugeMetricFamily(
        "sluice_webhook_failed",
        "Deliveries that used every attempt, kept in the delivery queue's failed registry.",
    )
    failed.add_metric([], backlog.failed)
    return [deliveries, pending, failed]


def render_webhooks(backlog: WebhookBacklog, totals: dict[str, int]) -> bytes:
    return generate_latest(Families(webhook_families(backlog, totals)))
