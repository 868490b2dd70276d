"""The state transitions, each an atomic script, against a real Redis."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator

import pytest
import redis as sync_redis
import redis.asyncio as aioredis
from rq import Queue

from sluice.config import Settings
from sluice.errors import QuotaExceeded
from sluice.state import keys
from sluice.state.records import AdapterRecord, AdapterState, CloseReason, Direction
from sluice.state.store import AdapterStore
from worker.reaper import Reaper


@pytest.fixture
async def store(clean_redis: str) -> AsyncIterator[AdapterStore]:
    client = aioredis.Redis.from_url(clean_redis, decode_responses=True)
    yield AdapterStore(client, retention_s=60)
    await client.aclose()


async def reapers_were_running(store: AdapterStore) -> None:
    """As if reapers had been passing all along (no outage, no quiet period)."""
    seconds, micros = await store.redis.time()
    await store.redis.hset(
        keys.REAPER, mapping={"last_pass_ms": seconds * 1000 + micros // 1000, "quiet_until_ms": 0}
    )


def record(adapter_id: str = "a1") -> AdapterRecord:
    return AdapterRecord(
        adapter_id=adapter_id,
        app_id="app1",
        direction=Direction.EGRESS,
        session_id="s",
        track_name="t",
        endpoint="ws://h/?k=v",
        codec="pcm",
    )


async def test_claim_once_then_abandon_refuses(store: AdapterStore) -> None:
    assert await store.create(record(), pickup_timeout_s=5)
    with pytest.raises(ValueError):
        await store.create(record(), pickup_timeout_s=5)  # ids never collide silently
    assert await store.claim("a1", "w1", heartbeat_ttl_s=3)
    assert not await store.claim("a1", "w2", heartbeat_ttl_s=3)
    assert not await store.abandon("a1", "app1")  # a worker has it: the API must not withdraw
    loaded = await store.load("a1")
    assert loaded is not None and loaded.worker == "w1"


async def test_abandon_wins_over_a_late_claim(store: AdapterStore) -> None:
    await store.create(record(), pickup_timeout_s=5)
    assert await store.abandon("a1", "app1")
    assert await store.load("a1") is None
    assert not await store.claim("a1", "w1", heartbeat_ttl_s=3)
    assert await store.redis.zscore(keys.PENDING, "a1") is None


async def test_claim_after_deadline_is_refused(store: AdapterStore) -> None:
    await store.create(record(), pickup_timeout_s=0.05)
    await asyncio.sleep(0.1)
    assert not await store.claim("a1", "w1", heartbeat_ttl_s=3)


async def test_close_is_idempotent_and_keeps_counters(store: AdapterStore) -> None:
    await store.create(record(), pickup_timeout_s=5)
    await store.claim("a1", "w1", heartbeat_ttl_s=3)
    await store.set_live_state("a1", AdapterState.ACTIVE)
    assert await store.close("a1", CloseReason.API_CLOSE, {"bytes": 42, "packets": 2}) == 1
    assert await store.close("a1", CloseReason.SHUTDOWN) == 0
    assert await store.close("nope", CloseReason.SHUTDOWN) == -1
    loaded = await store.load("a1")
    assert loaded is not None
    assert (loaded.state, loaded.close_reason) == (AdapterState.CLOSED, "api_close")
    assert loaded.counters["bytes"] == 42
    assert 0 < await store.redis.ttl(keys.adapter("a1")) <= 60
    assert not await store.set_live_state("a1", AdapterState.ACTIVE)  # closed stays closed


async def test_heartbeat_reports_close_requests(store: AdapterStore) -> None:
    await store.create(record(), pickup_timeout_s=5)
    await store.claim("a1", "w1", heartbeat_ttl_s=3)
    reply = await store.heartbeat("a1", ttl_s=3, counters={"packets": 5})
    assert not reply.should_stop
    await store.request_close("a1")
    assert (await store.heartbeat("a1", ttl_s=3)).should_stop
    loaded = await store.load("a1")
    assert loaded is not None and loaded.counters["packets"] == 5


async def test_failed_create_leaves_nothing(store: AdapterStore) -> None:
    await store.create(record(), pickup_timeout_s=5)
    await store.claim("a1", "w1", heartbeat_ttl_s=3)
    assert await store.fail("a1", "app1", "websocket_handshake_failed", "refused")
    assert await store.load("a1") is None
    assert await store.redis.zscore(keys.HEARTBEATS, "a1") is None
    assert await store.redis.zscore(keys.app_adapters("app1"), "a1") is None


async def test_reaper_marks_silent_pipelines_lost(store: AdapterStore, clean_redis: str) -> None:
    for adapter_id in ("live", "dead"):
        await store.create(record(adapter_id), pickup_timeout_s=5)
        await store.claim(adapter_id, "w", heartbeat_ttl_s=0.05)
        await store.set_live_state(adapter_id, AdapterState.ACTIVE)
    await store.heartbeat("live", ttl_s=30)
    await asyncio.sleep(0.1)
    reaper = Reaper(sync_redis.Redis.from_url(clean_redis), Settings(apps="a:b", egress_resumes=0))
    await reapers_were_running(store)
    lost, withdrawn, _, _ = reaper.reap_once()
    assert (lost, withdrawn) == (["dead"], [])
    dead = await store.load("dead")
    assert dead is not None and dead.close_reason == "worker_lost"
    live = await store.load("live")
    assert live is not None and live.state == AdapterState.ACTIVE
    assert reaper.reap_once() == ([], [], [], [])


async def test_reaper_withdraws_creates_nobody_claimed(
    store: AdapterStore, clean_redis: str
) -> None:
    await store.create(record(), pickup_timeout_s=0.01)
    await asyncio.sleep(0.05)
    settings = Settings(apps="a:b", pickup_timeout_s=0.01)
    reaper = Reaper(sync_redis.Redis.from_url(clean_redis), settings)
    await reapers_were_running(store)
    assert reaper.reap_once() == ([], [], [], [])  # still inside the grace period
    await store.redis.zadd(keys.PENDING, {"a1": 0})  # as if the deadline was long ago
    assert reaper.reap_once() == ([], ["a1"], [], [])
    assert await store.load("a1") is None


async def test_reaper_closes_creates_whose_api_replica_never_answered(
    store: AdapterStore, clean_redis: str
) -> None:
    """The replica died waiting on the create: the pipeline runs on, and nobody has its id.
    It is closed as any close does: webhook event, sealed header values gone."""
    for adapter_id in ("orphan", "answered"):
        await store.create(
            dataclasses.replace(record(adapter_id), webhooks=True),
            pickup_timeout_s=5,
            answer_within_s=0.01,
            sealed_headers="sealed-values",
        )
        await store.claim(adapter_id, "w", heartbeat_ttl_s=30)
        await store.set_live_state(adapter_id, AdapterState.ACTIVE)
    await store.answered("answered")
    settings = Settings(apps="a:b", pickup_timeout_s=0.01)
    reaper = Reaper(sync_redis.Redis.from_url(clean_redis), settings)
    await reapers_were_running(store)
    assert reaper.reap_once() == ([], [], [], [])  # still inside the grace period
    await store.redis.zadd(keys.UNANSWERED, {"orphan": 0})  # as if long past its deadline
    control = store.redis.pubsub()
    await control.subscribe(keys.adapter_control("orphan"))
    assert reaper.reap_once() == ([], [], [], ["orphan"])
    orphan = await store.load("orphan")
    assert orphan is not None and (orphan.state, orphan.close_reason) == ("closed", "api_lost")
    assert not await store.redis.sismember(keys.app_live("app1"), "orphan")
    assert not await store.redis.exists(keys.adapter_headers("orphan"))
    assert await store.redis.exists(keys.adapter_headers("answered"))
    events = await store.redis.xrange(keys.WEBHOOK_OUTBOX)
    closed = [e for _, e in events if e["type"] == "adapter.closed"]
    assert len(closed) == 1 and '"api_lost"' in closed[0]["record"]
    message = None
    async with asyncio.timeout(2):
        while message is None or message["type"] != "message":
            message = await control.get_message(timeout=1)
    assert message["data"] == "api_lost"  # the pipeline stops at once, saying why
    await control.aclose()  # type: ignore[no-untyped-call]
    beat = await store.heartbeat("orphan", ttl_s=30)
    assert beat.should_stop, "its pipeline stops at its next heartbeat, if not at once"
    answered = await store.load("answered")
    assert answered is not None and answered.state == AdapterState.ACTIVE
    assert await store.redis.zcard(keys.UNANSWERED) == 0


async def test_live_adapters_count_against_the_app_limit(store: AdapterStore) -> None:
    await store.create(record("a1"), pickup_timeout_s=5, max_live=2)
    await store.create(record("a2"), pickup_timeout_s=5, max_live=2)
    with pytest.raises(QuotaExceeded):
        await store.create(record("a3"), pickup_timeout_s=5, max_live=2)
    assert await store.load("a3") is None
    await store.claim("a1", "w", heartbeat_ttl_s=3)
    await store.close("a1", CloseReason.API_CLOSE)  # closed: no longer counts
    assert await store.abandon("a2", "app1")  # withdrawn: no longer counts
    await store.create(record("a3"), pickup_timeout_s=5, max_live=2)
    await store.create(record("a4"), pickup_timeout_s=5, max_live=2)
    assert await store.redis.scard(keys.app_live("app1")) == 2


async def test_a_vanished_record_is_reported_and_can_be_restored(store: AdapterStore) -> None:
    await store.create(record(), pickup_timeout_s=5)
    await store.claim("a1", "w1", heartbeat_ttl_s=3)
    await store.set_live_state("a1", AdapterState.ACTIVE)
    running = await store.load("a1")
    assert running is not None
    await store.redis.flushall()  # Redis restarted without persistence
    reply = await store.heartbeat("a1", ttl_s=3)
    assert reply.record_lost and not reply.should_stop
    await store.restore(running, heartbeat_ttl_s=3)
    again = await store.load("a1")
    assert again is not None and again.state == AdapterState.ACTIVE
    assert await store.redis.zscore(keys.HEARTBEATS, "a1") is not None
    assert not (await store.heartbeat("a1", ttl_s=3)).record_lost


async def test_reaper_stays_quiet_after_a_gap_between_passes(
    store: AdapterStore, clean_redis: str
) -> None:
    settings = Settings(
        apps="a:b",
        heartbeat_interval_s=0.1,
        heartbeat_ttl_s=0.5,
        reap_interval_s=0.1,
        egress_resumes=0,
    )
    reaper = Reaper(sync_redis.Redis.from_url(clean_redis), settings)
    await store.create(record("dead"), pickup_timeout_s=5)
    await store.claim("dead", "w", heartbeat_ttl_s=0.05)
    await store.set_live_state("dead", AdapterState.ACTIVE)
    reaper.reap_once()  # the first pass ever: a gap by definition, so it starts quiet
    await asyncio.sleep(0.6)
    assert reaper.reap_once() == ([], [], [], [])  # 0.6 s since the last pass: quiet again
    await asyncio.sleep(0.55)  # passes every 0.1 s from here: the quiet period ends
    for _ in range(6):
        await asyncio.sleep(0.1)
        lost, _, _, _ = reaper.reap_once()
        if lost:
            break
    assert lost == ["dead"]


async def test_a_lost_egress_adapter_is_resumed_then_closed_if_nobody_claims_it(
    store: AdapterStore, clean_redis: str
) -> None:
    settings = Settings(apps="a:b", egress_resumes=1, reconnect_window_s=5)
    conn = sync_redis.Redis.from_url(clean_redis)
    reaper = Reaper(conn, settings)
    await store.create(record("e"), pickup_timeout_s=5)
    await store.claim("e", "w1", heartbeat_ttl_s=0.05)
    await store.set_live_state("e", AdapterState.ACTIVE)
    await store.heartbeat("e", ttl_s=0.05, counters={"packets": 7}, extra={"p_seq": 9})
    await asyncio.sleep(0.1)
    await reapers_were_running(store)
    assert reaper.reap_once() == ([], [], ["e"], [])
    resuming = await store.load("e")
    assert resuming is not None
    assert (resuming.state, resuming.worker, resuming.resumes) == ("reconnecting", None, 1)
    assert resuming.counters["packets"] == 7 and resuming.extra["p_seq"] == 9
    (job,) = Queue(settings.queue_name, connection=conn).jobs
    assert job.args == ("e",)
    assert await store.claim("e", "w2", heartbeat_ttl_s=0.05)  # another worker takes it
    assert not await store.claim("e", "w3", heartbeat_ttl_s=0.05)  # and only one

    await store.set_live_state("e", AdapterState.ACTIVE)
    await asyncio.sleep(0.1)  # w2 dies too: no resume left, so it is lost for good
    assert reaper.reap_once() == (["e"], [], [], [])
    closed = await store.load("e")
    assert closed is not None and closed.close_reason == "worker_lost"


async def test_a_process_that_stalled_past_its_ttl_leaves_the_adapter_to_its_successor(
    store: AdapterStore, clean_redis: str
) -> None:
    """A pipeline starved for longer than the heartbeat TTL (a loaded machine) is taken
    for lost and resumed elsewhere. Its beats went on being accepted: both processes
    streamed to the endpoint (sequence numbers repeated) and wrote the same counters."""
    settings = Settings(apps="a:b", egress_resumes=1, reconnect_window_s=5)
    reaper = Reaper(sync_redis.Redis.from_url(clean_redis), settings)
    await store.create(record("e"), pickup_timeout_s=5)
    await store.claim("e", "w1", heartbeat_ttl_s=0.05)
    await store.set_live_state("e", AdapterState.ACTIVE)
    await store.heartbeat("e", ttl_s=0.05, counters={"packets": 7}, worker="w1")
    await asyncio.sleep(0.1)
    await reapers_were_running(store)
    assert reaper.reap_once().resumed == ["e"]

    handed_back = await store.heartbeat("e", ttl_s=3, counters={"packets": 99}, worker="w1")
    assert handed_back.superseded and not handed_back.should_stop
    assert await store.claim("e", "w2", heartbeat_ttl_s=3)
    late = await store.heartbeat("e", ttl_s=3, counters={"packets": 99}, worker="w1")
    assert late.superseded
    assert (await store.heartbeat("e", ttl_s=3, worker="w2")).state == "reconnecting"
    resumed = await store.load("e")
    assert resumed is not None and resumed.worker == "w2"
    assert resumed.counters["packets"] == 7  # w1's late counters were not written


async def test_a_resume_nobody_claims_in_the_window_is_lost(
    store: AdapterStore, clean_redis: str
) -> None:
    settings = Settings(apps="a:b", egress_resumes=3, reconnect_window_s=0.2)
    reaper = Reaper(sync_redis.Redis.from_url(clean_redis), settings)
    await store.create(record("e"), pickup_timeout_s=5)
    await store.claim("e", "w1", heartbeat_ttl_s=0.05)
    await store.set_live_state("e", AdapterState.ACTIVE)
    await asyncio.sleep(0.1)
    await reapers_were_running(store)
    assert reaper.reap_once().resumed == ["e"]
    await asyncio.sleep(0.3)  # every worker busy: the window passes unclaimed
    assert reaper.reap_once() == (["e"], [], [], [])
    assert not await store.claim("e", "w2", heartbeat_ttl_s=1)
    totals = await store.redis.hgetall(keys.METRICS)
    assert totals == {"resumes|egress": "1", "closes|egress|worker_lost": "1"}


async def test_a_lost_adapter_resumes_within_its_own_window_and_never_with_zero(
    store: AdapterStore, clean_redis: str
) -> None:
    settings = Settings(apps="a:b", egress_resumes=3, reconnect_window_s=5)
    reaper = Reaper(sync_redis.Redis.from_url(clean_redis), settings)
    for adapter_id, window_s in (("short", 0.2), ("never", 0), ("default", None)):
        egress = record(adapter_id)
        if window_s is not None:
            egress.options = {"reconnectWindowS": window_s}
        await store.create(egress, pickup_timeout_s=5)
        await store.claim(adapter_id, "w1", heartbeat_ttl_s=0.05)
        await store.set_live_state(adapter_id, AdapterState.ACTIVE)
    await asyncio.sleep(0.1)
    await reapers_were_running(store)
    lost, _, resumed, _ = reaper.reap_once()
    assert (lost, sorted(resumed)) == (["never"], ["default", "short"])
    await asyncio.sleep(0.3)  # past the short window, well inside the configured one
    assert reaper.reap_once().lost == ["short"]
    states = {a: (await store.load(a)) for a in ("short", "never", "default")}
    assert {a: r.state if r else None for a, r in states.items()} == {
        "short": "closed",
        "never": "closed",
        "default": "reconnecting",
    }


async def test_expired_adapters_leave_the_app_index(store: AdapterStore) -> None:
    await store.redis.zadd(keys.app_adapters("app1"), {f"gone{i}": i for i in range(5)})
    await store.create(record("new"), pickup_timeout_s=5)
    assert await store.redis.zrange(keys.app_adapters("app1"), 0, -1) == ["new"]


async def test_closing_a_queued_create_leaves_nothing_pending(store: AdapterStore) -> None:
    await store.create(record("q"), pickup_timeout_s=5)
    assert await store.close("q", CloseReason.API_CLOSE) == 1
    assert await store.redis.zscore(keys.PENDING, "q") is None
    assert not await store.claim("q", "w", heartbeat_ttl_s=3)
