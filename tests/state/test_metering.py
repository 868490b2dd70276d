"""Counters folded into cluster totals and hourly usage, atomically with the record."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
import redis as sync_redis
import redis.asyncio as aioredis

from api.metrics import ClusterSnapshot, cluster_families
from sluice.config import Settings
from sluice.state import keys
from sluice.state.lag_histogram import LagHistogram
from sluice.state.records import AdapterRecord, AdapterState, CloseReason, Direction
from sluice.state.store import AdapterStore
from sluice.state.usage import hour_of
from tests.state.test_store import reapers_were_running
from worker.reaper import Reaper


@pytest.fixture
async def store(clean_redis: str) -> AsyncIterator[AdapterStore]:
    client = aioredis.Redis.from_url(clean_redis, decode_responses=True)
    yield AdapterStore(client, retention_s=60, usage_retention_s=3600)
    await client.aclose()


async def running(store: AdapterStore, adapter_id: str, direction: Direction) -> None:
    record = AdapterRecord(
        adapter_id=adapter_id,
        app_id="app1",
        direction=direction,
        session_id="s",
        track_name="t",
        endpoint="ws://h/",
        codec="pcm",
    )
    await store.create(record, pickup_timeout_s=5)
    await store.claim(adapter_id, "w1", heartbeat_ttl_s=3)
    await store.set_live_state(adapter_id, AdapterState.ACTIVE)


async def totals(store: AdapterStore) -> dict[str, int]:
    return {k: int(v) for k, v in (await store.redis.hgetall(keys.METRICS)).items()}


async def this_hour_usage(store: AdapterStore) -> dict[str, int]:
    hour = hour_of(datetime.now(UTC))
    raw = await store.redis.hgetall(keys.usage("app1", hour))
    return {k: int(v) for k, v in raw.items()}


async def test_heartbeats_fold_growth_not_values(store: AdapterStore) -> None:
    await running(store, "e1", Direction.EGRESS)
    await running(store, "i1", Direction.INGEST)
    for sent in (100, 250, 250, 400):  # cumulative, as pipelines report them
        await store.heartbeat("e1", ttl_s=3, counters={"bytes": sent, "packets": sent // 50})
    await store.heartbeat("i1", ttl_s=3, counters={"bytes": 70, "underruns": 2})
    assert await totals(store) == {
        "egress|c_bytes": 400,
        "egress|c_packets": 8,
        "ingest|c_bytes": 70,
        "ingest|c_underruns": 2,
    }
    assert await this_hour_usage(store) == {"egress_bytes": 400, "ingest_bytes": 70}
    assert 0 < await store.redis.ttl(keys.usage("app1", hour_of(datetime.now(UTC)))) <= 3600


async def test_maxima_are_not_summed(store: AdapterStore) -> None:
    await running(store, "e1", Direction.EGRESS)
    await store.heartbeat("e1", ttl_s=3, counters={"max_loop_lag_ms": 7, "max_buffer_ms": 40})
    await store.heartbeat("e1", ttl_s=3, counters={"max_loop_lag_ms": 9, "max_buffer_ms": 60})
    assert await totals(store) == {}


async def test_final_counters_count_even_after_the_api_closed_the_record(
    store: AdapterStore,
) -> None:
    await running(store, "e1", Direction.EGRESS)
    await store.heartbeat("e1", ttl_s=3, counters={"bytes": 100})
    assert await store.close("e1", CloseReason.API_CLOSE) == 1  # a forced close
    await store.heartbeat("e1", ttl_s=3, counters={"bytes": 150})  # the pipeline's last beat
    assert await store.close("e1", CloseReason.API_CLOSE, {"bytes": 180}) == 0
    loaded = await store.load("e1")
    assert loaded is not None and loaded.counters["bytes"] == 180
    assert (await totals(store))["egress|c_bytes"] == 180
    assert (await this_hour_usage(store))["egress_bytes"] == 180
    assert (await totals(store))["closes|egress|api_close"] == 1  # counted once


async def test_closes_by_reason_include_reaped_adapters(
    store: AdapterStore, settings: Settings
) -> None:
    await running(store, "e1", Direction.EGRESS)
    await running(store, "e2", Direction.EGRESS)
    await store.close("e1", CloseReason.ENDPOINT_UNAVAILABLE)
    await store.redis.zadd(keys.HEARTBEATS, {"e2": 0})  # its heartbeat ran out long ago
    await reapers_were_running(store)
    reaper = Reaper(
        sync_redis.Redis.from_url(settings.redis_url),
        settings.model_copy(update={"egress_resumes": 0}),
    )
    reaper.reap_once()
    got = await totals(store)
    assert got["closes|egress|endpoint_unavailable"] == 1
    assert got["closes|egress|worker_lost"] == 1


async def test_loop_lag_histogram_reaches_the_metrics(store: AdapterStore) -> None:
    await running(store, "e1", Direction.EGRESS)
    lag = LagHistogram()
    for seconds in (0.0005, 0.0005, 0.003, 0.2):
        lag.observe(seconds)
    await store.heartbeat("e1", ttl_s=3, counters={}, extra=lag.fields)
    lag.observe(2.0)
    await store.close("e1", CloseReason.API_CLOSE, {}, extra=lag.fields)
    snapshot = ClusterSnapshot(totals=await totals(store))
    (family,) = [
        f for f in cluster_families(snapshot) if f.name == "sluice_adapter_loop_lag_seconds"
    ]
    samples = {
        (s.name, s.labels.get("le")): s.value
        for s in family.samples
        if s.labels["direction"] == "egress"
    }
    assert samples[("sluice_adapter_loop_lag_seconds_bucket", "0.001")] == 2
    assert samples[("sluice_adapter_loop_lag_seconds_bucket", "0.005")] == 3
    assert samples[("sluice_adapter_loop_lag_seconds_bucket", "0.25")] == 4
    assert samples[("sluice_adapter_loop_lag_seconds_bucket", "+Inf")] == 5
    assert samples[("sluice_adapter_loop_lag_seconds_count", None)] == 5
    assert samples[("sluice_adapter_loop_lag_seconds_sum", None)] == pytest.approx(2.204)


async def test_cleared_audio_is_folded_and_shown_in_seconds(store: AdapterStore) -> None:
    await running(store, "i1", Direction.INGEST)
    await store.heartbeat("i1", ttl_s=3, counters={"cleared_ms": 9_000})
    await store.close("i1", CloseReason.ENDPOINT_CLOSED, {"cleared_ms": 9_480})
    assert (await totals(store))["ingest|c_cleared_ms"] == 9_480
    record = await store.load("i1")
    assert record is not None and record.counters["cleared_ms"] == 9_480
    snapshot = ClusterSnapshot(totals=await totals(store))
    (family,) = [
        f for f in cluster_families(snapshot) if f.name == "sluice_adapter_cleared_seconds"
    ]
    values = {s.labels["direction"]: s.value for s in family.samples}
    assert values == {"ingest": pytest.approx(9.48), "egress": 0}
