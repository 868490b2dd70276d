"""The SFU node directory, placement and routing, against a real Redis (no SFU process)."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator

import httpx
import pytest
from redis.asyncio import Redis

from api.sfu_routing import SfuRouter
from sluice.cli.sfu_supervisor import node_count, node_ports
from sluice.config import Settings
from sluice.errors import SessionNotFound
from sluice.state import keys, sfu_nodes, track_registry
from sluice.state.records import MediaKind
from sluice.state.sfu_nodes import NodeInfo, NodeLoad


def node(node_id: str, streams: int = 0, sessions: int = 0, beat_at_ms: int = 0) -> NodeInfo:
    load = NodeLoad(sessions=sessions, forwarded=streams)
    return NodeInfo(node_id, f"http://{node_id}", "host", 1, 0, load, beat_at_ms)


@pytest.fixture
async def redis(clean_redis: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(clean_redis, decode_responses=True)
    yield client
    await client.aclose()


def test_choose_takes_the_less_loaded_of_two() -> None:
    assert sfu_nodes.choose([]) is None
    busy, idle = node("busy", streams=40), node("idle", streams=3)
    assert sfu_nodes.choose([busy, idle]) is idle
    assert sfu_nodes.choose([busy, idle], {"idle": 50}) is busy  # placed since the beat


def test_choose_spreads_over_many_nodes_and_avoids_the_busiest() -> None:
    rng = random.Random(7)
    nodes = [node(f"n{i}", streams=i) for i in range(4)]
    picks = [sfu_nodes.choose(nodes, rng=rng) for _ in range(400)]
    counts = {n.node_id: sum(p is n for p in picks) for n in nodes}
    assert counts["n3"] == 0  # never the better of any pair
    assert counts["n0"] > counts["n1"] > counts["n2"] > 0


def test_score_orders_streams_then_sessions_then_cpu() -> None:
    assert sfu_nodes.score(NodeLoad(published=1, forwarded=2, upstreams=3)) == (6, 0, 0.0)
    assert sfu_nodes.score(NodeLoad(sessions=4, cpu_pct=9.5), 2) == (2, 4, 9.5)


def test_node_ports_and_count() -> None:
    assert node_ports(8081, 3, avoid=(8082, 8080)) == [8081, 8083, 8084]
    assert node_count(Settings(apps="a:b", sfu_nodes=3), None) == 3
    assert node_count(Settings(apps="a:b", sfu_nodes=3), 1) == 1
    assert node_count(Settings(dev=True), None) == 1
    assert node_count(Settings(apps="a:b"), None) >= 1  # one per core


async def test_directory_round_trip_expiry_and_leave(redis: Redis) -> None:
    info = NodeInfo("n1", "http://127.0.0.1:9", "vm", 42, 1000, NodeLoad(2, 1, 3, 0, 12.5))
    assert await sfu_nodes.beat(redis, info)  # the entry was missing: the first beat
    assert not await sfu_nodes.beat(redis, info)
    (got,) = await sfu_nodes.live_nodes(redis)
    assert (got.node_id, got.url, got.pid, got.load) == ("n1", info.url, 42, info.load)
    assert got.beat_at_ms > 0
    assert 0 < await redis.pttl(keys.sfu_node("n1")) <= sfu_nodes.NODE_TTL_MS
    await redis.delete(keys.sfu_node("n1"))  # what the TTL does to a dead node
    assert await sfu_nodes.live_nodes(redis) == []
    assert await redis.zcard(keys.SFU_NODES) == 0  # its index entry is forgotten too
    assert await sfu_nodes.beat(redis, info)  # missing again: Redis lost it
    await sfu_nodes.leave(redis, "n1")
    assert await sfu_nodes.get(redis, "n1") is None


async def record(redis: Redis, session_id: str, node_id: str, app_id: str = "app1") -> None:
    track = track_registry.TrackInfo(
        app_id, session_id, "mic", MediaKind.AUDIO, "opus", "active", "0"
    )
    await track_registry.write_session(
        redis, track_registry.SessionRecord(app_id, session_id, 1, (track,), node_id)
    )


async def test_a_track_on_a_dead_node_is_not_found(redis: Redis) -> None:
    await sfu_nodes.beat(redis, node("n1"))
    await record(redis, "s1", "n1")
    assert await track_registry.session_node(redis, "s1") == ("app1", "n1")
    found = await track_registry.lookup_track(redis, "app1", "s1", "mic")
    assert found.node_id == "n1"
    await redis.delete(keys.sfu_node("n1"))
    with pytest.raises(SessionNotFound, match="gone"):
        await track_registry.lookup_track(redis, "app1", "s1", "mic")


async def test_router_places_routes_and_falls_back(redis: Redis, clean_redis: str) -> None:
    settings = Settings(apps="app1:s", redis_url=clean_redis, sfu_url="http://fallback:1/")
    router = SfuRouter(settings)
    try:
        assert await router.place() == "http://fallback:1"  # no node registered
        assert await router.locate("app1", "unknown") == "http://fallback:1"
        await sfu_nodes.beat(redis, node("n1"))
        await sfu_nodes.beat(redis, node("n2"))
        placed = {await router.place() for _ in range(6)}
        assert placed == {"http://n1", "http://n2"}  # a burst between beats spreads
        await record(redis, "s1", "n2")
        assert await router.locate("app1", "s1") == "http://n2"
        with pytest.raises(SessionNotFound):
            await router.locate("app2", "s1")  # another app's session
        with pytest.raises(SessionNotFound):
            await router.locate("app1", "unknown")  # nodes exist: nobody has it
        await redis.delete(keys.sfu_node("n2"))
        with pytest.raises(SessionNotFound, match="gone"):
            await router.locate("app1", "s1")
    finally:
        await router.aclose()


async def test_api_answers_404_for_a_session_of_a_dead_node(redis: Redis, clean_redis: str) -> None:
    from sluice.cli.apps import create_api_app

    settings = Settings(apps="app1:secret1", redis_url=clean_redis)
    await record(redis, "s1", "gone-node")
    app = create_api_app(settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
        auth = {"Authorization": "Bearer secret1"}
        got = await client.get("/v1/apps/app1/sessions/s1", headers=auth)
        assert (got.status_code, got.json()["errorCode"]) == (404, "not_found_session_error")
        bad = await client.get("/v1/apps/app1/sessions/s1", headers={"Authorization": "x"})
        assert bad.status_code == 401  # no lookup for an unauthenticated call
