"""Lifecycle events (E7) written by the transition scripts, sealed header values (E6) kept
and deleted with their adapter, and the dispatcher that turns events into deliveries:
against a real Redis, no processes."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from rq import Queue

from sluice.config import Settings
from sluice.state import keys
from sluice.state.outbox import EventType, parse_entry
from sluice.state.records import AdapterRecord, AdapterState, CloseReason, Direction
from sluice.state.store import AdapterStore
from worker.reaper import Reaper
from worker.webhooks import dispatcher as dispatcher_module
from worker.webhooks.delivery import backoff_s, job_id
from worker.webhooks.dispatcher import Dispatcher


@pytest.fixture
async def store(clean_redis: str) -> AsyncIterator[AdapterStore]:
    client = aioredis.Redis.from_url(clean_redis, decode_responses=True)
    yield AdapterStore(client, retention_s=60)
    await client.aclose()


def record(adapter_id: str, *, webhooks: bool = True) -> AdapterRecord:
    """An egress adapter of app1, whose app has a webhook unless `webhooks` is False."""
    return AdapterRecord(
        adapter_id=adapter_id,
        app_id="app1",
        direction=Direction.EGRESS,
        session_id="s",
        track_name="t",
        endpoint="ws://h/?k=v",
        codec="pcm",
        webhooks=webhooks,
    )


async def outbox(store: AdapterStore) -> list[dict[str, Any]]:
    entries = await store.redis.xrange(keys.WEBHOOK_OUTBOX)
    return [fields for _id, fields in entries]


async def test_each_transition_of_a_webhook_adapter_is_an_event(store: AdapterStore) -> None:
    await store.create(record("a1"), pickup_timeout_s=5)
    assert await outbox(store) == []  # connecting is not an event
    await store.claim("a1", "w1", heartbeat_ttl_s=3)
    for state in (AdapterState.ACTIVE, AdapterState.RECONNECTING, AdapterState.ACTIVE):
        await store.set_live_state("a1", state)
    await store.set_live_state("a1", AdapterState.ACTIVE)  # no change: no event
    await store.close("a1", CloseReason.ENDPOINT_UNAVAILABLE, {"packets": 5})
    await store.close("a1", CloseReason.API_CLOSE)  # closed already: no event
    events = [parse_entry(fields) for fields in await outbox(store)]
    assert [(e.type, e.sequence) for e in events] == [
        (EventType.ACTIVE, 1),
        (EventType.RECONNECTING, 2),
        (EventType.RECONNECTED, 3),
        (EventType.CLOSED, 4),
    ]
    assert [e.record.state for e in events] == ["active", "reconnecting", "active", "closed"]
    closed = events[-1]
    assert closed.record.close_reason == "endpoint_unavailable"
    assert closed.record.counters["packets"] == 5
    body = json.loads(closed.body())
    assert body["id"] == "a1-4" and body["appId"] == "app1" and body["sequence"] == 4
    assert body["adapter"]["endpoint"] == "ws://h/"  # the query (tokens live there) stays out
    assert body["createdAt"].endswith("Z")


async def test_adapters_of_apps_without_a_webhook_emit_nothing(store: AdapterStore) -> None:
    await store.create(record("a1", webhooks=False), pickup_timeout_s=5)
    await store.claim("a1", "w1", heartbeat_ttl_s=3)
    await store.set_live_state("a1", AdapterState.ACTIVE)
    await store.close("a1", CloseReason.API_CLOSE)
    assert await outbox(store) == []


async def test_a_lost_worker_is_reconnecting_then_closed(
    store: AdapterStore, clean_redis: str
) -> None:
    reaper = Reaper(
        sync_redis.Redis.from_url(clean_redis),
        Settings(apps="a:b", egress_resumes=1, reconnect_window_s=0.1),
    )
    await store.create(record("e"), pickup_timeout_s=5)
    await store.claim("e", "w1", heartbeat_ttl_s=0.05)
    await store.set_live_state("e", AdapterState.ACTIVE)
    await asyncio.sleep(0.1)
    await store.redis.hset(keys.REAPER, mapping={"last_pass_ms": 0, "quiet_until_ms": 0})
    reaper.reap_once()  # the first pass after a gap is quiet
    await asyncio.sleep(0.05)
    await store.redis.hset(keys.REAPER, "quiet_until_ms", 0)
    assert reaper.reap_once().resumed == ["e"]
    await asyncio.sleep(0.2)  # nobody claims it in the window
    assert reaper.reap_once().lost == ["e"]
    events = [parse_entry(fields) for fields in await outbox(store)]
    assert [e.type for e in events] == [EventType.ACTIVE, EventType.RECONNECTING, EventType.CLOSED]
    assert events[-1].record.close_reason == "worker_lost"


@pytest.mark.parametrize("end", ["close", "fail", "abandon", "reap"])
async def test_sealed_headers_live_as_long_as_their_adapter(
    store: AdapterStore, clean_redis: str, end: str
) -> None:
    await store.create(record("a1"), pickup_timeout_s=5, sealed_headers="sealed-token")
    assert await store.sealed_headers("a1") == "sealed-token"
    assert "sealed-token" not in json.dumps(await store.redis.hgetall(keys.adapter("a1")))
    if end != "abandon":
        await store.claim("a1", "w1", heartbeat_ttl_s=0.05)
    if end == "close":
        await store.close("a1", CloseReason.API_CLOSE)
    elif end == "fail":
        await store.fail("a1", "app1", "websocket_handshake_failed", "refused")
    elif end == "abandon":
        await store.abandon("a1", "app1")
    else:  # lost while connecting
        await asyncio.sleep(0.1)
        await store.redis.hset(keys.REAPER, mapping={"last_pass_ms": 10**15, "quiet_until_ms": 0})
        Reaper(sync_redis.Redis.from_url(clean_redis), Settings(apps="a:b")).reap_once()
    assert await store.sealed_headers("a1") is None


async def test_an_adapter_without_headers_stores_none(store: AdapterStore) -> None:
    await store.create(record("a1"), pickup_timeout_s=5)
    assert await store.sealed_headers("a1") is None


def settings(url: str, **more: Any) -> Settings:
    return Settings(
        apps="app1:s,app2:s",
        redis_url=url,
        webhooks="app1:http://127.0.0.1:9/hook",
        webhook_attempts=9,
        **more,
    )


async def emit(store: AdapterStore, adapter_id: str, app_id: str = "app1") -> None:
    rec = record(adapter_id)
    rec.app_id = app_id
    await store.create(rec, pickup_timeout_s=5)
    await store.claim(adapter_id, "w1", heartbeat_ttl_s=3)
    await store.set_live_state(adapter_id, AdapterState.ACTIVE)


async def test_the_dispatcher_turns_events_into_delivery_jobs(
    store: AdapterStore, clean_redis: str
) -> None:
    conn = sync_redis.Redis.from_url(clean_redis)
    dispatcher = Dispatcher(conn, settings(clean_redis), "test:1")
    await emit(store, "a1")  # before the group exists: still delivered
    await emit(store, "b1", app_id="app2")  # no webhook for app2: dropped
    assert dispatcher.pass_once(None) == 2
    assert await store.redis.xlen(keys.WEBHOOK_OUTBOX) == 0  # acknowledged and deleted
    (job,) = Queue(settings(clean_redis).webhook_queue_name, connection=conn).jobs
    assert job.id == job_id("a1-1")
    assert job.args[:2] == ("app1", "a1-1")
    assert json.loads(job.args[2])["type"] == "adapter.active"
    assert job.meta["adapterId"] == "a1" and job.meta["attempts"] == 0
    assert job.retries_left == 8 and job.retry_intervals == [1, 2, 4, 8, 16, 32, 64, 128]
    assert dispatcher.pass_once(None) == 0


async def test_entries_a_dead_dispatcher_read_are_taken_over(
    store: AdapterStore, clean_redis: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = sync_redis.Redis.from_url(clean_redis)
    await emit(store, "a1")
    Dispatcher(conn, settings(clean_redis), "dead:1")._create_group()
    # The dead one read the entry and never acknowledged it.
    conn.xreadgroup(keys.WEBHOOK_DISPATCHERS, "dead:1", {keys.WEBHOOK_OUTBOX: ">"})
    monkeypatch.setattr(dispatcher_module, "CLAIM_IDLE_MS", 0)
    survivor = Dispatcher(conn, settings(clean_redis), "alive:2")
    assert survivor.pass_once(None) == 1
    assert Queue(settings(clean_redis).webhook_queue_name, connection=conn).count == 1
    assert conn.xlen(keys.WEBHOOK_OUTBOX) == 0


def test_backoff_doubles_from_one_second() -> None:
    assert backoff_s(8) == [1, 2, 4, 8, 16, 32, 64]
    assert len(backoff_s(10)) == 9  # retries: one fewer than attempts
