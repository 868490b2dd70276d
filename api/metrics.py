"""`/metrics` of an API replica: its own request metrics plus cluster-wide figures.

Why two sources. Adapter pipelines run in forked, short-lived processes (one per
adapter, SIGKILL included), so they keep no Prometheus state of their own: prometheus
client's multiprocess mode would leave files per adapter process, growing without bound
on a long-lived worker host. Instead each pipeline saves its counters with its heartbeat,
and the store adds their growth to cluster totals in Redis (`sluice:metrics`) in the same
script, so totals and adapter records agree by construction and survive any process's
death. Every API replica renders those totals, read at scrape time: they are the same on
every replica, so aggregate them with `max`, not `sum`. What a replica measures itself
(create outcomes, create latency) lives in its own registry and does sum across replicas.
"""

from __future__ import annotations

import asyncio
from collections import Counter as Tally
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from redis import Redis as SyncRedis
from redis.asyncio import Redis
from rq import Queue, Worker

from sluice.state import keys
from sluice.state.lag_histogram import BUCKET_FIELDS, SUM_FIELD, cumulative_buckets
from sluice.state.records import AdapterState, CloseReason, Direction

LIVE_STATES = (AdapterState.CONNECTING, AdapterState.ACTIVE, AdapterState.RECONNECTING)
# Record counter field → metric name (without `_total`) and what it counts.
ADAPTER_COUNTERS = {
    "c_packets": (
        "sluice_adapter_packets",
        "Packets sent to (egress) or received from (ingest) WebSocket endpoints.",
    ),
    "c_bytes": ("sluice_adapter_bytes", "Bytes of those Packets (Protobuf framing included)."),
    "c_dropped": (
        "sluice_adapter_backlog_dropped",
        "Egress audio dropped from a full backlog while the endpoint was away or slow.",
    ),
    "c_skipped": (
        "sluice_adapter_skipped",
        "Ingest: malformed messages skipped; egress "
        "JPEG: frames skipped because the endpoint was slow.",
    ),
    "c_reconnects": ("sluice_adapter_reconnects", "Egress re-dials of lost endpoints."),
    "c_underruns": (
        "sluice_adapter_playout_underruns",
        "Ingest: 20 ms frames played as silence because the endpoint sent too little.",
    ),
    "c_concealed": (
        "sluice_adapter_concealed_frames",
        "Egress audio: frames the network lost, made up by in-band FEC or concealment.",
    ),
    "c_lost": (
        "sluice_adapter_lost_frames",
        "Egress audio: frames lost in network holes too long to conceal (over 100 ms).",
    ),
}
CREATE_BUCKETS_S = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

# `*_created` timestamps per series double what a scrape carries and no query needs them.
disable_created_metrics()  # type: ignore[no-untyped-call]


class ApiMetrics:
    """What one API replica measures itself, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        PlatformCollector(registry=self.registry)
        GCCollector(registry=self.registry)
        self.creates = Counter(
            "sluice_api_creates",
            "Adapter create items answered, by outcome: `active` or the error code.",
            ["direction", "outcome"],
            registry=self.registry,
        )
        self.closes = Counter(
            "sluice_api_closes",
            "Adapter close items answered, by outcome: `closed` or the error code.",
            ["outcome"],
            registry=self.registry,
        )
        self.create_seconds = Histogram(
            "sluice_adapter_create_seconds",
            "From a create request to its adapter being active.",
            ["direction"],
            buckets=CREATE_BUCKETS_S,
            registry=self.registry,
        )


@dataclass(slots=True)
class ClusterSnapshot:
    """Cluster-wide figures as read from Redis at one scrape."""

    totals: dict[str, int] = field(default_factory=dict)
    adapters: Tally[tuple[str, str]] = field(default_factory=Tally)  # (direction, state)
    workers: Tally[str] = field(default_factory=Tally)  # rq worker state
    queued: int = 0


async def read_cluster(redis: Redis, rq_redis: SyncRedis, queue_name: str) -> ClusterSnapshot:
    snapshot = ClusterSnapshot()
    totals, live_ids, pending_ids = await _read_totals_and_ids(redis)
    snapshot.totals = totals
    ids = sorted(set(live_ids) | set(pending_ids))
    if ids:
        async with redis.pipeline(transaction=False) as pipe:
            for adapter_id in ids:
                pipe.hmget(keys.adapter(adapter_id), "direction", "state")
            rows = await pipe.execute()
        for direction, state in rows:
            if direction is not None and state is not None and _text(state) != "closed":
                snapshot.adapters[(_text(direction), _text(state))] += 1
    # rq's API is synchronous: its registries are read in a thread, off the event loop.
    snapshot.workers, snapshot.queued = await asyncio.to_thread(_read_workers, rq_redis, queue_name)
    return snapshot


async def _read_totals_and_ids(redis: Redis) -> tuple[dict[str, int], list[str], list[str]]:
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.METRICS)
        pipe.zrange(keys.HEARTBEATS, 0, -1)
        pipe.zrange(keys.PENDING, 0, -1)
        raw_totals, live, pending = await pipe.execute()
    totals = {_text(k): int(v) for k, v in raw_totals.items()}
    return totals, [_text(i) for i in live], [_text(i) for i in pending]


def _read_workers(rq_redis: SyncRedis, queue_name: str) -> tuple[Tally[str], int]:
    queue = Queue(queue_name, connection=rq_redis)
    states: Tally[str] = Tally()
    for worker in Worker.all(queue=queue):
        states[str(worker.get_state())] += 1
    return states, queue.count


def cluster_families(snapshot: ClusterSnapshot) -> list[Metric]:
    """The snapshot as metric families; zero series are kept so none vanish and reappear."""
    totals = snapshot.totals
    directions = [d.value for d in Direction]
    adapters = GaugeMetricFamily(
        "sluice_adapters", "Adapters not closed, by state.", labels=["direction", "state"]
    )
    for direction in directions:
        for live in LIVE_STATES:
            adapters.add_metric([direction, live.value], snapshot.adapters[(direction, live)])
    closes = CounterMetricFamily(
        "sluice_adapter_closes", "Adapters closed, by reason.", labels=["direction", "reason"]
    )
    for direction in directions:
        for reason in CloseReason:
            closes.add_metric(
                [direction, reason.value], totals.get(f"closes|{direction}|{reason.value}", 0)
            )
    resumes = CounterMetricFamily(
        "sluice_adapter_resumes",
        "Adapters handed to another worker process after theirs was lost.",
        labels=["direction"],
    )
    for direction in directions:
        resumes.add_metric([direction], totals.get(f"resumes|{direction}", 0))
    families: list[Metric] = [adapters, closes, resumes]
    for name, (metric, doc) in ADAPTER_COUNTERS.items():
        family = CounterMetricFamily(metric, doc, labels=["direction"])
        for direction in directions:
            family.add_metric([direction], totals.get(f"{direction}|{name}", 0))
        families.append(family)
    cleared = CounterMetricFamily(
        "sluice_adapter_cleared_seconds",
        "Ingest: queued audio dropped by the endpoints' `clear` messages (barge-in).",
        labels=["direction"],
    )
    for direction in directions:
        cleared.add_metric([direction], totals.get(f"{direction}|c_cleared_ms", 0) / 1000)
    families.append(cleared)
    lag = HistogramMetricFamily(
        "sluice_adapter_loop_lag_seconds",
        "How late pipelines' 100 ms event-loop probes woke up.",
        labels=["direction"],
    )
    for direction in directions:
        counts = {name: totals.get(f"{direction}|{name}", 0) for name in BUCKET_FIELDS}
        lag.add_metric(
            [direction],
            buckets=cumulative_buckets(counts),
            sum_value=totals.get(f"{direction}|{SUM_FIELD}", 0) / 1_000_000,
        )
    workers = GaugeMetricFamily(
        "sluice_workers", "Worker processes registered in RQ, by state.", labels=["state"]
    )
    for worker_state in sorted({"idle", "busy", *snapshot.workers}):
        workers.add_metric([worker_state], snapshot.workers[worker_state])
    queued = GaugeMetricFamily(
        "sluice_queue_jobs", "Creates waiting in the queue for a free worker process."
    )
    queued.add_metric([], snapshot.queued)
    return [*families, lag, workers, queued]


class Families:
    """A collector of fixed families, so `generate_latest` can render them."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def render(metrics: ApiMetrics, snapshot: ClusterSnapshot) -> bytes:
    own = generate_latest(metrics.registry)
    cluster = generate_latest(Families(cluster_families(snapshot)))
    return own + cluster


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
