"""Faults: Redis unreachable or restarted empty while adapters stream."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request

from sluice.cli.devserver import redis_server_binary, spawn_redis
from sluice.wire.packet_pb2 import Packet
from tests.conftest import NO_REDIS, free_port
from tests.integration.audio import StereoToneTrack
from tests.integration.helpers import Stack, egress_item, endpoint, ingest_item, start_stack

pytestmark = pytest.mark.integration


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A Redis only this test uses, so it can be frozen: (url, pid)."""
    binary = redis_server_binary()
    if binary is None:
        pytest.skip(NO_REDIS)
    port = free_port()
    server = spawn_redis(binary, port, tmp_path / "redis")
    yield f"redis://127.0.0.1:{port}/0", server.pid
    server.kill()
    server.wait()


@pytest.fixture
def frozen_stack(own_redis: tuple[str, int], tmp_path: Path) -> Iterator[Stack]:
    running = start_stack(own_redis[0], 2, tmp_path)
    yield running
    running.stop()
    for name in ("api.log", "worker.log", "sfu.log"):
        if (tmp_path / name).exists():
            print(f"--- {name}\n{(tmp_path / name).read_text()[-6000:]}")


def print_logs(log_dir: Path) -> None:
    """The stack's logs; pytest shows them when the test failed."""
    for log in sorted(log_dir.glob("*.log")):
        print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")


async def create_egress(client: Any, url: str, session_id: str) -> str:
    resp = await client.post(
        "/adapters/websocket/new", json={"tracks": [egress_item(url, session_id)]}
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["tracks"][0]["adapterId"])


async def test_redis_outage_and_empty_restart_do_not_stop_media(
    frozen_stack: Stack, own_redis: tuple[str, int]
) -> None:
    stack, (url, redis_pid) = frozen_stack, own_redis
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 660), "mic")
    async with endpoint() as ep, stack.client() as client:
        adapter_id = await create_egress(client, ep.url, session_id)
        (conn,) = await ep.wait_connections(1)
        await asyncio.sleep(1.0)

        os.kill(redis_pid, signal.SIGSTOP)  # unreachable: nothing answers for 3 s
        frozen_at, before = time.monotonic(), len(conn.messages)
        try:
            during = await client.get(f"/adapters/websocket/{adapter_id}")
            assert during.status_code == 503
            assert during.json()["errorCode"] == "service_unavailable"
            await asyncio.sleep(max(0.0, frozen_at + 3.0 - time.monotonic()))
            sent_while_down = len(conn.messages) - before
        finally:
            os.kill(redis_pid, signal.SIGCONT)
        print(f"{sent_while_down} packets in the 3 s Redis was unreachable")
        assert sent_while_down >= 140  # media never waited on Redis

        await asyncio.sleep(3.5)  # longer than the heartbeat TTL: a wrong reap would show
        view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
        assert view["state"] == "active", view

        redis.Redis.from_url(url).flushall()  # as if Redis restarted without persistence
        restored_by = time.monotonic() + 10  # the next heartbeat finds it gone and restores it
        while (found := await client.get(f"/adapters/websocket/{adapter_id}")).status_code == 404:
            assert time.monotonic() < restored_by, "the record was never restored"
            await asyncio.sleep(0.05)
        view = found.json()
        assert view["state"] == "active", view
        assert view["counters"]["packets"] > 0
        got = [Packet.FromString(m) for m in conn.messages if isinstance(m, bytes)]
        await sessions.close()
    assert [p.sequenceNumber for p in got] == list(range(len(got)))
    assert len(ep.connections) == 1  # the endpoint never noticed


async def test_redis_forgetting_the_sfu_nodes_ends_no_pipeline_or_cascade(
    own_redis: tuple[str, int], tmp_path: Path
) -> None:
    """Redis restarted empty forgets every SFU node until its next heartbeat (up to 1 s):
    pipelines and cascades that looked then took their node for dead and ended."""
    stack = start_stack(own_redis[0], 2, tmp_path, sfu_nodes=2)
    publisher, subscriber = stack.nodes[0].sessions(), stack.nodes[1].sessions()
    arrivals: list[float] = []
    try:
        session_id, _ = await publisher.publish(StereoToneTrack(440, 660), "mic")
        await subscriber.pull(  # node 2 pulls the track from node 1: a cascade
            session_id, "mic", kind="audio", on_frame=lambda _: arrivals.append(time.monotonic())
        )
        async with endpoint() as ep, stack.client() as client:
            adapter_id = await create_egress(client, ep.url, session_id)
            await ep.wait_connections(1)
            flushes = 6  # each lands in a pipeline's check of its node about half the time
            for _ in range(flushes):
                redis.Redis.from_url(own_redis[0]).flushall()
                await asyncio.sleep(0.7)
            # The nodes write their sessions back as soon as they see Redis forgot them
            # (before: at their next refresh, up to 15 s): the API routes them again.
            flushed_at = time.monotonic()
            for _ in range(200):
                if (await client.get(f"/sessions/{session_id}")).status_code == 200:
                    break
                await asyncio.sleep(0.1)
            routed_after = time.monotonic() - flushed_at
            await asyncio.sleep(max(0.0, flushed_at + 2.0 - time.monotonic()))
            view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
            connections = len(ep.connections)
        recent = [t for t in arrivals if t > time.monotonic() - 1.0]
    finally:
        await subscriber.close()
        await publisher.close()
        stack.stop()
        print_logs(tmp_path)
    print(
        f"after {flushes} flushes: adapter {view['state']}, cascade {len(recent)} frames/s, "
        f"the session routed again {routed_after:.1f} s after the last"
    )
    assert (view["state"], connections) == ("active", 1), view
    assert routed_after < 2.5
    assert len(recent) >= 40, "the cascade from node 1 to node 2 ended"


@pytest.mark.own_stack  # kills its API
async def test_a_create_whose_api_died_before_answering_is_closed_api_lost(stack: Stack) -> None:
    """Nobody got the adapter's id: without the sweep it would stream until its endpoint
    hung up, holding a worker process all along."""
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 660), "mic")
    dialled, closed = asyncio.Event(), asyncio.get_running_loop().create_future()

    async def slow_handshake(ws: ServerConnection, request: Request) -> None:
        dialled.set()
        await asyncio.sleep(0.5)  # the create is in flight while its API replica dies

    async def handler(ws: ServerConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for _ in ws:
                pass
        if not closed.done():
            closed.set_result(ws.close_code)

    async with serve(handler, "127.0.0.1", 0, process_request=slow_handshake) as server:
        url = f"ws://127.0.0.1:{server.sockets[0].getsockname()[1]}/"
        async with stack.client() as client:
            create = asyncio.create_task(create_egress(client, url, session_id))
            await asyncio.wait_for(dialled.wait(), 10)
            stack.api.send_signal(signal.SIGKILL)
            with pytest.raises(httpx.HTTPError):
                await create
        close_code = await asyncio.wait_for(closed, 25)  # answer window, grace, a reap pass
    conn = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    (record,) = [
        r for k in conn.scan_iter("sluice:adapter:*") if (r := conn.hgetall(k)).get("endpoint")
    ]
    await sessions.close()
    assert (record["state"], record["close_reason"], close_code) == ("closed", "api_lost", 1000)


@pytest.mark.own_stack  # kills its SFU
async def test_sfu_killed_closes_pipelines_promptly(stack: Stack) -> None:
    """The SFU dies with its sessions (no BYE): egress and ingest adapters notice and
    close with `track_ended` within seconds; nothing hangs."""
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 660), "mic")
    async with endpoint() as egress_ep, endpoint() as ingest_ep, stack.client() as client:
        resp = await client.post(
            "/adapters/websocket/new",
            json={"tracks": [egress_item(egress_ep.url, session_id), ingest_item(ingest_ep.url)]},
        )
        ids = [t["adapterId"] for t in resp.json()["tracks"]]
        await asyncio.sleep(1.0)
        stack.sfu.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        views: list[dict[str, str]] = []
        while time.monotonic() - killed_at < 15:
            views = [(await client.get(f"/adapters/websocket/{i}")).json() for i in ids]
            if all(v["state"] == "closed" for v in views):
                break
            await asyncio.sleep(0.2)
        closed_after = time.monotonic() - killed_at
        for ep in (egress_ep, ingest_ep):
            await asyncio.wait_for(ep.connections[0].closed.wait(), 2)
            assert ep.connections[0].close_code == 1000
    await sessions.close()
    print(f"both adapters closed {closed_after:.1f} s after the SFU died")
    assert [(v["state"], v["closeReason"]) for v in views] == [("closed", "track_ended")] * 2
    assert closed_after < 12


@pytest.mark.workers(2)
async def test_a_pipeline_frozen_past_its_ttl_hands_over_and_stops(stack: Stack) -> None:
    """A pipeline process starved longer than the heartbeat TTL (a machine at load 30)
    is taken for lost and resumed on another. Thawed, it streamed on beside its
    successor: the endpoint got two streams, and sequence numbers repeated."""
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 660), "mic")
    async with endpoint() as ep, stack.client() as client:
        adapter_id = await create_egress(client, ep.url, session_id)
        (first,) = await ep.wait_connections(1)
        await asyncio.sleep(1.5)
        pid = stack.pipeline_pid(adapter_id)
        os.kill(pid, signal.SIGSTOP)
        try:
            _, second = await ep.wait_connections(2, timeout_s=15)
        finally:
            os.kill(pid, signal.SIGCONT)
        thawed_at = time.monotonic()
        await asyncio.wait_for(first.closed.wait(), 5)  # its next beat tells it
        stopped_after = time.monotonic() - thawed_at
        sent_by_first = len(first.messages)
        await asyncio.sleep(2.0)
        view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
        successor = stack.pipeline_pid(adapter_id)
        await sessions.close()
    print(f"the thawed pipeline stopped {stopped_after:.2f} s after SIGCONT")
    assert len(ep.connections) == 2 and len(first.messages) == sent_by_first
    assert view["state"] == "active", view
    assert successor != pid
    with pytest.raises(ProcessLookupError):
        for _ in range(50):  # the old pipeline's process ends (its worker reaps it)
            os.kill(pid, 0)
            await asyncio.sleep(0.1)
    after = [Packet.FromString(m).sequenceNumber for m in second.messages if isinstance(m, bytes)]
    assert after == list(range(after[0], after[0] + len(after)))


@pytest.mark.workers(2)
async def test_egress_resumes_on_another_process_after_sigkill(stack: Stack) -> None:
    """The pipeline process dies mid-stream: another takes over within seconds, the
    endpoint sees one reconnect, sequence numbers go on without repeating, and the
    outage shows as a jump in `timestamp`."""
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 660), "mic")
    async with endpoint() as ep, stack.client() as client:
        adapter_id = await create_egress(client, ep.url, session_id)
        (first,) = await ep.wait_connections(1)
        await asyncio.sleep(2.5)
        pid = stack.pipeline_pid(adapter_id)
        os.kill(pid, signal.SIGKILL)
        killed_at = time.monotonic()
        _, second = await ep.wait_connections(2, timeout_s=10)
        resumed_after = time.monotonic() - killed_at
        await asyncio.sleep(2.0)
        view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
        await sessions.close()
    before = [Packet.FromString(m) for m in first.messages if isinstance(m, bytes)]
    after = [Packet.FromString(m) for m in second.messages if isinstance(m, bytes)]
    print(
        f"resumed {resumed_after:.2f} s after SIGKILL; {len(before)} + {len(after)} packets; "
        f"sequence {before[-1].sequenceNumber} → {after[0].sequenceNumber}, timestamp "
        f"{before[-1].timestamp} → {after[0].timestamp}"
    )
    assert resumed_after < 6  # heartbeat TTL 3 s + a reap pass + pull and dial
    assert len(ep.connections) == 2  # one reconnect
    assert view["state"] == "active", view
    numbers = [p.sequenceNumber for p in before + after]
    assert numbers == sorted(set(numbers))  # strictly increasing: none repeats
    assert [p.sequenceNumber for p in after] == list(
        range(after[0].sequenceNumber, after[0].sequenceNumber + len(after))
    )
    gap_s = (after[0].timestamp - before[-1].timestamp) / 48_000
    assert gap_s >= 0.8 * (resumed_after - 1.0), gap_s  # the outage, in real time
    skipped = after[0].sequenceNumber - before[-1].sequenceNumber - 1
    assert skipped <= gap_s * 50 + 60  # no more numbers skipped than the outage can explain
    assert view["counters"]["packets"] >= len(before) + len(after) - 60
