"""The operator's commands against a real, flushed Redis: what they read, how they close."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator, Iterator

import pytest
import redis as sync_redis
from redis.asyncio import Redis
from rq import Queue, Worker

from api.service import adapter_view
from sluice.cli import admin, admin_fleet
from sluice.cli.main import main
from sluice.config import Settings, get_settings
from sluice.state import keys, sfu_nodes
from sluice.state.connection import async_client, sync_client
from sluice.state.jobs import JOB_FUNCTION
from sluice.state.records import AdapterRecord, AdapterState, CloseReason, Direction
from sluice.state.sfu_nodes import NodeInfo, NodeLoad
from sluice.state.store import AdapterStore
from sluice.state.track_registry import SessionRecord, TrackInfo, write_session

SECRET = "token=s3cr3t"
MS = 0.001  # every wait below is a multiple of this


@pytest.fixture
async def redis(settings: Settings) -> AsyncIterator[Redis]:
    client = async_client(settings)
    yield client
    await client.aclose()


@pytest.fixture
def rq_redis(settings: Settings) -> Iterator[sync_redis.Redis]:
    client = sync_client(settings)
    yield client
    client.close()


@pytest.fixture
def store(redis: Redis, settings: Settings) -> AdapterStore:
    return AdapterStore(redis, retention_s=settings.closed_retention_s)


def record(adapter_id: str, app_id: str = "app1", minute: int = 0) -> AdapterRecord:
    return AdapterRecord(
        adapter_id=adapter_id,
        app_id=app_id,
        direction=Direction.EGRESS,
        session_id=f"s-{adapter_id}",
        track_name="mic",
        endpoint=f"wss://user:pw@stt.example.com:8443/listen?{SECRET}",
        codec="pcm",
        created_at=f"2030-01-01T00:{minute:02d}:00.000Z",
    )


async def running(store: AdapterStore, adapter: AdapterRecord) -> None:
    """Created, claimed by a worker and active, as a live pipeline leaves it."""
    await store.create(adapter, pickup_timeout_s=5)
    assert await store.claim(adapter.adapter_id, "host:1", heartbeat_ttl_s=3)
    await store.set_live_state(adapter.adapter_id, AdapterState.ACTIVE)


def ids(adapters: list[admin.AdapterInfo]) -> list[str]:
    return [info.adapter_id for info in adapters]


# --- adapters -----------------------------------------------------------------------


async def test_ls_shows_live_adapters_newest_first(redis: Redis, store: AdapterStore) -> None:
    await running(store, record("old", minute=1))
    await store.create(record("new", app_id="app2", minute=3), pickup_timeout_s=5)
    await running(store, record("gone", minute=2))
    await store.close("gone", CloseReason.ENDPOINT_CLOSED)

    assert ids(await admin.list_adapters(redis)) == ["new", "old"]
    assert ids(await admin.list_adapters(redis, include_closed=True)) == ["new", "gone", "old"]
    assert ids(await admin.list_adapters(redis, app_id="app1")) == ["old"]
    active = await admin.list_adapters(redis, state=AdapterState.ACTIVE)
    assert ids(active) == ["old"]
    closed = await admin.list_adapters(redis, state=AdapterState.CLOSED)  # implies --all
    assert ids(closed) == ["gone"] and closed[0].close_reason == "endpoint_closed"


async def test_ls_skips_index_entries_whose_record_expired(
    redis: Redis, store: AdapterStore
) -> None:
    await running(store, record("kept"))
    await redis.zadd(keys.app_adapters("app1"), {"expired": 1})
    assert ids(await admin.list_adapters(redis, include_closed=True)) == ["kept"]


async def test_ls_finds_a_claimed_adapter_missing_from_its_index(
    redis: Redis, store: AdapterStore
) -> None:
    await running(store, record("orphan"))
    await redis.delete(keys.app_live("app1"))
    assert ids(await admin.list_adapters(redis)) == ["orphan"]  # via the heartbeats zset


async def test_show_has_every_field_and_no_secret(redis: Redis, store: AdapterStore) -> None:
    await running(store, record("a1"))
    await store.heartbeat("a1", ttl_s=3, counters={"packets": 7, "bytes": 1234})
    await store.request_close("a1")
    await redis.hset(keys.adapter("a1"), mapping={"p_seq": "4", "x_url": f"ws://h/?{SECRET}"})

    info = await admin.show_adapter(redis, "a1")
    assert info is not None
    assert info.endpoint == "wss://stt.example.com:8443/listen"
    assert info.worker == "host:1" and info.state is AdapterState.ACTIVE
    assert info.counters["packets"] == 7 and info.counters["bytes"] == 1234
    assert info.heartbeat_in_s is not None and 0 < info.heartbeat_in_s <= 3
    assert info.claim_in_s is None  # claimed
    assert info.close_requested
    assert info.other_fields == {"p_seq": "4", "x_url": "ws://h/"}
    assert SECRET not in json.dumps(info.other_fields)
    assert await admin.show_adapter(redis, "nope") is None


async def test_show_tells_when_an_unclaimed_create_is_withdrawn(
    redis: Redis, store: AdapterStore
) -> None:
    await store.create(record("queued"), pickup_timeout_s=5)
    info = await admin.show_adapter(redis, "queued")
    assert info is not None and info.worker is None and info.heartbeat_in_s is None
    assert info.claim_in_s is not None and 0 < info.claim_in_s <= 5


async def test_close_without_a_pipeline_closes_the_record_after_the_timeout(
    redis: Redis, rq_redis: sync_redis.Redis, store: AdapterStore, settings: Settings
) -> None:
    quick = settings.model_copy(update={"close_timeout_s": 200 * MS})
    await running(store, record("a1"))

    result = await admin.close_adapter(quick, redis, rq_redis, "a1")
    assert result.outcome is admin.CloseOutcome.CLOSED
    assert result.waited_s >= 200 * MS
    assert result.adapter is not None and result.adapter.state is AdapterState.CLOSED
    assert result.adapter.close_reason == CloseReason.API_CLOSE
    assert await redis.zscore(keys.HEARTBEATS, "a1") is None

    again = await admin.close_adapter(quick, redis, rq_redis, "a1")
    assert again.outcome is admin.CloseOutcome.ALREADY_CLOSED
    missing = await admin.close_adapter(quick, redis, rq_redis, "nope")
    assert missing.outcome is admin.CloseOutcome.NOT_FOUND and missing.adapter is None


async def test_close_reaches_the_running_pipeline(
    redis: Redis, rq_redis: sync_redis.Redis, store: AdapterStore, settings: Settings
) -> None:
    """A pipeline stand-in listens on the control channel and closes with its counters."""
    patient = settings.model_copy(update={"close_timeout_s": 5000 * MS})
    await running(store, record("a1"))
    pubsub = redis.pubsub()
    await pubsub.subscribe(keys.adapter_control("a1"))

    async def pipeline() -> None:
        async for message in pubsub.listen():
            if message["type"] == "message":
                await store.close("a1", CloseReason.API_CLOSE, {"bytes": 4321})
                return

    task = asyncio.create_task(pipeline())
    result = await admin.close_adapter(patient, redis, rq_redis, "a1")
    await task
    await pubsub.aclose()  # type: ignore[no-untyped-call]
    assert result.outcome is admin.CloseOutcome.CLOSED
    assert result.waited_s < 5000 * MS  # the pipeline answered; nothing was forced
    assert result.adapter is not None and result.adapter.counters["bytes"] == 4321


# --- sessions and workers -----------------------------------------------------------


def session(session_id: str, app_id: str, created_ms: int, *tracks: str) -> SessionRecord:
    return SessionRecord(
        app_id=app_id,
        session_id=session_id,
        created_at_ms=created_ms,
        tracks=tuple(
            TrackInfo(app_id, session_id, name, "audio", "opus", "active", str(mid))
            for mid, name in enumerate(tracks)
        ),
    )


async def test_sessions_come_from_the_sfu_registry(redis: Redis) -> None:
    seconds, _ = await redis.time()
    now_ms = int(seconds) * 1000
    await write_session(redis, session("s1", "app1", now_ms - 60_000, "mic", "cam"))
    await write_session(redis, session("s2", "app2", now_ms - 1_000))

    sessions = await admin_fleet.list_sessions(redis)
    assert [s.session_id for s in sessions] == ["s2", "s1"]
    assert [t.track_name for t in sessions[1].tracks] == ["cam", "mic"]
    assert sessions[1].tracks[0].kind == "audio" and sessions[1].tracks[0].codec == "opus"
    assert 59 < sessions[1].age_s < 62
    assert [s.session_id for s in await admin_fleet.list_sessions(redis, app_id="app1")] == ["s1"]


def test_workers_come_from_rq(rq_redis: sync_redis.Redis, settings: Settings) -> None:
    queue = Queue(settings.queue_name, connection=rq_redis)
    busy = Worker([queue], name="w-busy", connection=rq_redis)
    busy.register_birth()  # type: ignore[no-untyped-call]
    # Enqueued as `AdapterService` does it: the adapter id is the job's one argument.
    job = queue.enqueue(JOB_FUNCTION, "a1", job_id="job-of-a1", job_timeout=-1, result_ttl=0)
    queue.remove(job)  # dequeued by the worker
    busy.prepare_execution(job)
    idle = Worker([queue], name="w-idle", connection=rq_redis)
    idle.register_birth()  # type: ignore[no-untyped-call]
    idle.set_state("idle")
    queue.enqueue(JOB_FUNCTION, "a2", job_id="a2", job_timeout=-1, result_ttl=0)

    report = admin_fleet.list_workers(rq_redis, settings.queue_name)
    assert [w.name for w in report.workers] == ["w-busy", "w-idle"]
    assert report.busy == 1 and report.queue_length == 1
    first = report.workers[0]
    assert first.state == "busy" and first.job_id == "job-of-a1" and first.adapter_id == "a1"
    assert first.pid is not None and first.heartbeat_age_s is not None
    assert report.workers[1].adapter_id is None


def test_a_half_written_execution_does_not_fail_the_listing(
    rq_redis: sync_redis.Redis, settings: Settings
) -> None:
    """A worker's beat that races its job's end writes the execution back without
    `created_at`: RQ's reader raised KeyError and `sluice workers` failed with it."""
    queue = Queue(settings.queue_name, connection=rq_redis)
    busy = Worker([queue], name="w-busy", connection=rq_redis)
    busy.register_birth()  # type: ignore[no-untyped-call]
    job = queue.enqueue(JOB_FUNCTION, "a1", job_id="job-of-a1", job_timeout=-1, result_ttl=0)
    queue.remove(job)
    execution = busy.prepare_execution(job)
    rq_redis.hdel(execution.key, "created_at", "id", "job_id", "worker_name")

    (listed,) = admin_fleet.list_workers(rq_redis, settings.queue_name).workers
    assert (listed.name, listed.state, listed.job_id, listed.adapter_id) == (
        "w-busy",
        "busy",
        None,
        None,
    )


# --- the command line ---------------------------------------------------------------


@pytest.fixture
def cli_env(cli_env: None, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The commands' environment, pointed at the test's Redis."""
    monkeypatch.setenv("SLUICE_REDIS_URL", settings.redis_url)
    get_settings.cache_clear()


async def test_cli_lists_and_shows_without_secrets(
    cli_env: None, store: AdapterStore, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = record("a1")
    adapter.track_name = "[bold]mic[/bold]"  # printed as itself, never as markup
    adapter.endpoint = f"wss://user:pw@stt.example.com:8443/{'long-path/' * 8}?{SECRET}"
    adapter.options = {"sampleRate": 16000, "channels": 1}
    await running(store, adapter)
    lag = {"h_lag_le_1000": 40, "h_lag_le_2500": 10, "h_lag_le_25000": 1, "h_lag_sum_us": 51_000}
    await store.heartbeat("a1", ttl_s=3, counters={"bytes": 1_234_567}, extra=lag)

    assert await asyncio.to_thread(main, ["adapters", "ls"]) == 0
    table = capsys.readouterr().out
    assert "a1" in table and "1.2 MB" in table
    assert "[bold]mic[/bold]" in table
    assert "\x1b[" not in table  # no colour codes when stdout is not a terminal
    # Piped: the endpoint is one unbroken line, and no line is padded with spaces.
    assert f"wss://stt.example.com:8443/{'long-path/' * 8}" in table
    assert all(line == line.rstrip() for line in table.splitlines())

    assert await asyncio.to_thread(main, ["adapters", "ls", "--json", "--app", "app1"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [item["adapterId"] for item in listed] == ["a1"]

    assert await asyncio.to_thread(main, ["adapters", "show", "a1"]) == 0
    shown = capsys.readouterr().out
    assert "in " in shown and "1234567 (1.2 MB)" in shown and "max_loop_lag_ms" in shown
    assert "channels 1" in shown and "sampleRate 16000" in shown  # the settings in effect
    bars = {
        bucket: " ".join(next(line for line in shown.splitlines() if bucket in line).split()[-4:])
        for bucket in ("≤ 1 ms", "≤ 2.5 ms", "≤ 25 ms", "≤ 50 ms")
    }
    assert bars == {
        "≤ 1 ms": f"{'█' * 30} 40 78.4 %",
        "≤ 2.5 ms": "███████▌ 10 19.6 %",
        "≤ 25 ms": "▊ 1 2.0 %",
        "≤ 50 ms": "≤ 50 ms 0",
    }
    assert "51 samples, mean 1.0 ms" in shown

    assert await asyncio.to_thread(main, ["adapters", "show", "a1", "--json"]) == 0
    shown_json = json.loads(capsys.readouterr().out)
    assert shown_json["heartbeatInS"] > 0 and shown_json["appId"] == "app1"
    assert shown_json["settings"] == {"sampleRate": 16000, "channels": 1}
    assert shown_json["loopLag"]["buckets"][:2] == [
        {"leMs": 1.0, "count": 40},
        {"leMs": 2.5, "count": 10},
    ]
    # Where it overlaps the API's answer for the adapter, it is that answer.
    loaded = await store.load("a1")
    assert loaded is not None
    api_answer = adapter_view(loaded).model_dump(mode="json", exclude_none=True)
    assert {name: shown_json[name] for name in api_answer} == api_answer

    for output in (table, json.dumps(listed), shown, json.dumps(shown_json)):
        assert "s3cr3t" not in output and "user:pw" not in output

    assert await asyncio.to_thread(main, ["adapters", "show", "nope"]) == 1
    assert capsys.readouterr().err.strip() == "sluice: no adapter nope"


async def test_show_lists_the_extension_settings_in_effect(
    cli_env: None, redis: Redis, store: AdapterStore, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = record("a1")
    adapter.options = {"sampleRate": 16000, "channels": 1, "events": True, "reconnectWindowS": 0.0}
    await running(store, adapter)

    info = await admin.show_adapter(redis, "a1")
    assert info is not None and info.settings == adapter.options
    assert "options" not in info.other_fields  # shown as settings, not as raw JSON

    assert await asyncio.to_thread(main, ["adapters", "show", "a1"]) == 0
    shown = capsys.readouterr().out
    assert "\nsettings " in shown
    for line in ("sampleRate 16000", "channels 1", "events true", "reconnectWindowS 0.0"):
        assert line in shown, shown
    assert await asyncio.to_thread(main, ["adapters", "show", "a1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"] == adapter.options


async def test_show_gives_the_settings_in_effect(
    cli_env: None, store: AdapterStore, capsys: pytest.CaptureFixture[str]
) -> None:
    adapter = record("a1")
    adapter.direction, adapter.codec = Direction.INGEST, "mulaw"
    adapter.options = {"inputCodec": "mulaw", "sampleRate": 8000, "channels": 1}
    await running(store, adapter)

    info = await admin.show_adapter(store.redis, "a1")
    assert info is not None and info.settings == adapter.options
    assert "options" not in info.other_fields  # shown once, as settings
    assert await asyncio.to_thread(main, ["adapters", "show", "a1"]) == 0
    shown = capsys.readouterr().out
    for line in ('inputCodec "mulaw"', "sampleRate 8000", "channels 1"):
        assert line in shown, shown
    assert await asyncio.to_thread(main, ["adapters", "show", "a1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["settings"]["sampleRate"] == 8000


async def test_cli_closes_once_then_reports_it_closed(
    cli_env: None, store: AdapterStore, capsys: pytest.CaptureFixture[str]
) -> None:
    # Queued, unclaimed: the service closes the record at once, no pipeline to wait for.
    await store.create(record("a1"), pickup_timeout_s=5)
    argv = ["adapters", "close", "a1", "--reason", "stuck"]
    assert await asyncio.to_thread(main, argv) == 0
    out, err = capsys.readouterr()
    assert out.startswith("a1: closed (api_close) in ")
    assert "adapter_closed_by_operator" in err and "stuck" in err  # the log, not stdout
    loaded = await store.load("a1")
    assert loaded is not None and loaded.state is AdapterState.CLOSED

    assert await asyncio.to_thread(main, ["adapters", "close", "a1"]) == 0
    assert capsys.readouterr().out == "a1: already closed (api_close)\n"
    assert await asyncio.to_thread(main, ["adapters", "close", "nope"]) == 1
    assert "sluice: no adapter nope" in capsys.readouterr().err

    assert await asyncio.to_thread(main, ["adapters", "close", "a1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "adapterId": "a1",
        "status": "closed",
        "bytesProcessed": 0,
        "closeReason": "api_close",
        "alreadyClosed": True,
        "waitedS": 0.0,
    }
    assert await asyncio.to_thread(main, ["adapters", "close", "nope", "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["errorCode"] == "adapter_not_found"


async def test_cli_lists_sessions_and_workers(
    cli_env: None,
    redis: Redis,
    rq_redis: sync_redis.Redis,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    seconds, _ = await redis.time()
    await write_session(redis, session("s1", "app1", int(seconds) * 1000, "mic"))
    worker = Worker([settings.queue_name], name="w1", connection=rq_redis)
    worker.register_birth()  # type: ignore[no-untyped-call]

    assert await asyncio.to_thread(main, ["sessions", "ls"]) == 0
    out = capsys.readouterr().out
    assert "s1" in out and "mic audio/opus active" in out and "1 session\n" in out
    assert await asyncio.to_thread(main, ["sessions", "ls", "--app", "app2", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert await asyncio.to_thread(main, ["sessions", "ls", "--json"]) == 0
    [listed_session] = json.loads(capsys.readouterr().out)
    assert listed_session["sessionId"] == "s1" and listed_session["tracks"] == [
        {"trackName": "mic", "mid": "0", "status": "active", "kind": "audio", "codec": "opus"}
    ]

    assert await asyncio.to_thread(main, ["workers"]) == 0
    out = capsys.readouterr().out
    assert "w1" in out and "1 worker, 0 busy, 0 queued on sluice-adapters" in out
    assert await asyncio.to_thread(main, ["workers", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["queueName"] == "sluice-adapters" and listed["queueLength"] == 0
    assert listed["workers"][0]["name"] == "w1" and listed["workers"][0]["heartbeatAgeS"] >= 0


async def test_cli_shows_sfu_nodes_and_the_node_of_each_session(
    cli_env: None, redis: Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await asyncio.to_thread(main, ["sfu", "nodes"]) == 0
    assert "no SFU node is registered" in capsys.readouterr().out
    load = NodeLoad(sessions=2, published=1, forwarded=3, upstreams=1, cpu_pct=12.0)
    await sfu_nodes.beat(redis, NodeInfo("vm-8081-abc", "http://127.0.0.1:8081", "vm", 7, 0, load))
    seconds, _ = await redis.time()
    record = dataclasses.replace(
        session("s1", "app1", int(seconds) * 1000, "mic"), node_id="vm-8081-abc"
    )
    await write_session(redis, record)

    assert await asyncio.to_thread(main, ["sfu", "nodes"]) == 0
    out = capsys.readouterr().out
    assert "vm-8081-abc" in out and "http://127.0.0.1:8081" in out and "12 %" in out
    assert "1 node, 5 streams" in out
    assert await asyncio.to_thread(main, ["sfu", "nodes", "--json"]) == 0
    (shown,) = json.loads(capsys.readouterr().out)
    assert shown["load"]["forwarded"] == 3 and shown["url"] == "http://127.0.0.1:8081"
    assert await asyncio.to_thread(main, ["sessions", "ls", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["nodeId"] == "vm-8081-abc"
