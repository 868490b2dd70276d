"""Egress end to end: an aiortc publisher's tone arrives at a WebSocket endpoint as PCM."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pytest

from sluice.wire.packet_pb2 import Packet
from tests.integration.audio import StereoToneTrack, dominant_frequency, pcm_channels
from tests.integration.helpers import (
    Connection,
    Stack,
    drop_connection,
    egress_item,
    endpoint,
    wait_state,
)

pytestmark = pytest.mark.integration


async def publish_tone(stack: Stack) -> tuple[Any, str, StereoToneTrack]:
    sessions = stack.sessions()
    track = StereoToneTrack(440, 660)
    session_id, _ = await sessions.publish(track, "mic")
    return sessions, session_id, track


async def create(stack: Stack, items: list[dict[str, str]]) -> list[dict[str, Any]]:
    async with stack.client() as client:
        resp = await client.post("/adapters/websocket/new", json={"tracks": items})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["tracks"])


def packets(conn: Connection) -> list[Packet]:
    return [Packet.FromString(m) for m in conn.messages if isinstance(m, bytes)]


async def view(stack: Stack, adapter_id: str) -> dict[str, Any]:
    async with stack.client() as client:
        return dict((await client.get(f"/adapters/websocket/{adapter_id}")).json())


async def views_once(
    stack: Stack, items: Iterable[dict[str, Any]], done: Callable[[dict[str, Any]], bool]
) -> list[dict[str, Any]]:
    """The adapters' views as soon as one of them satisfies `done` (at most 5 s on)."""
    deadline = time.monotonic() + 5
    while True:
        states = [await view(stack, item["adapterId"]) for item in items]
        if any(done(s) for s in states) or time.monotonic() > deadline:
            return states
        await asyncio.sleep(0.05)


async def test_tone_arrives_as_pcm_packets(stack: Stack) -> None:
    sessions, session_id, _ = await publish_tone(stack)
    async with endpoint() as ep:
        (item,) = await create(stack, [egress_item(ep.url, session_id)])
        assert item["sessionId"] == session_id
        (conn,) = await ep.wait_connections(1)
        await asyncio.sleep(3.0)
        got = packets(conn)
        await sessions.close()
    print(f"{len(got)} packets in 3 s")
    assert 135 <= len(got) <= 165  # ~50 per second
    assert all(len(p.payload) == 3840 for p in got)
    assert [p.sequenceNumber for p in got] == list(range(len(got)))
    assert got[0].timestamp == 0
    steps = {b.timestamp - a.timestamp for a, b in itertools.pairwise(got)}
    assert steps == {960}
    left, right = pcm_channels([p.payload for p in got[10:]])
    assert abs(dominant_frequency(left) - 440) < 5
    assert abs(dominant_frequency(right) - 660) < 5
    # The publisher left: the adapter ends with the track, whatever the endpoint did.
    state = await wait_state(stack, item["adapterId"], "closed", 10)
    assert (state["state"], state["closeReason"]) == ("closed", "track_ended")


async def test_source_validation(stack: Stack) -> None:
    sessions, session_id, _ = await publish_tone(stack)
    try:
        async with stack.client() as client:
            for item, status, code in [
                (
                    egress_item("ws://127.0.0.1:9/", "no-such-session"),
                    404,
                    "not_found_session_error",
                ),
                (
                    egress_item("ws://127.0.0.1:9/", session_id, "nope"),
                    404,
                    "not_found_track_error",
                ),
                (egress_item("ws://127.0.0.1:9/", session_id, codec="jpeg"), 400, "invalid_params"),
            ]:
                resp = await client.post("/adapters/websocket/new", json={"tracks": [item]})
                assert (resp.status_code, resp.json()["errorCode"]) == (status, code), resp.text
    finally:
        await sessions.close()


async def test_reconnect_within_the_window_loses_nothing(stack: Stack) -> None:
    sessions, session_id, _ = await publish_tone(stack)
    async with endpoint() as ep:
        (item,) = await create(stack, [egress_item(ep.url, session_id)])
        (first,) = await ep.wait_connections(1)
        await asyncio.sleep(1.0)
        ep.reject_status = 503  # refuse re-dials for 1.5 s
        assert first.ws is not None
        await drop_connection(first.ws)  # the connection drops, no close frame
        await asyncio.sleep(1.5)
        ep.reject_status = None
        second = (await ep.wait_connections(2, timeout_s=3))[1]
        await asyncio.sleep(1.5)
        before, after = packets(first), packets(second)
        state = await view(stack, item["adapterId"])
        await sessions.close()
    sequence = [p.sequenceNumber for p in before + after]
    missing = sorted(set(range(sequence[-1] + 1)) - set(sequence))
    print(
        f"before {len(before)}, after {len(after)}, missing {len(missing)}, "
        f"dropped {state['counters']['dropped']}, attempts {len(ep.attempts)}"
    )
    assert missing == []
    assert state["counters"]["reconnects"] == 1
    assert state["state"] == "active"
    assert after[0].sequenceNumber <= before[-1].sequenceNumber + 1


async def test_outage_longer_than_the_window_closes_the_adapter(stack: Stack) -> None:
    sessions, session_id, _ = await publish_tone(stack)
    async with endpoint() as ep:
        (item,) = await create(stack, [egress_item(ep.url, session_id)])
        (first,) = await ep.wait_connections(1)
        ep.reject_status = 503
        lost_at = time.monotonic()
        assert first.ws is not None
        first.ws.transport.abort()
        deadline = lost_at + 7
        state: dict[str, Any] = {}
        while time.monotonic() < deadline:
            state = await view(stack, item["adapterId"])
            if state["state"] == "closed":
                break
            await asyncio.sleep(0.1)
        closed_after = time.monotonic() - lost_at
        attempts_at_close = len(ep.attempts)
        await asyncio.sleep(1.5)
        await sessions.close()
    print(f"closed {closed_after:.2f} s after the loss, {attempts_at_close - 1} re-dials")
    assert (state["state"], state["closeReason"]) == ("closed", "endpoint_unavailable")
    assert 4.5 <= closed_after <= 6.5
    assert len(ep.attempts) == attempts_at_close  # no dial after the adapter closed


async def test_endpoint_close_1000_ends_and_track_end_closes(stack: Stack) -> None:
    sessions, session_id, track = await publish_tone(stack)
    async with endpoint() as ep:
        one, two = await create(
            stack, [egress_item(ep.url, session_id), egress_item(ep.url, session_id)]
        )
        conns = await ep.wait_connections(2)
        await asyncio.sleep(0.5)
        by_path = conns[0]
        assert by_path.ws is not None
        await by_path.ws.close(1000)  # one endpoint says it is done
        first_state = await views_once(stack, (one, two), lambda s: s["state"] == "closed")
        closed = [s for s in first_state if s["state"] == "closed"]
        assert len(closed) == 1 and closed[0]["closeReason"] == "endpoint_closed"
        track.stop()
        await sessions.close()  # the publisher leaves: the other adapter's source ends
        other = conns[1]
        await asyncio.wait_for(other.closed.wait(), 5)
        assert other.close_code == 1000
    states = [await view(stack, a["adapterId"]) for a in (one, two)]
    assert sorted(s["closeReason"] for s in states) == ["endpoint_closed", "track_ended"]


async def test_two_adapters_on_one_track_get_identical_audio(stack: Stack) -> None:
    sessions, session_id, _ = await publish_tone(stack)
    async with endpoint() as ep:
        await create(stack, [egress_item(ep.url, session_id), egress_item(ep.url, session_id)])
        a, b = await ep.wait_connections(2)
        await asyncio.sleep(2.0)
        await sessions.close()
    pa, pb = packets(a), packets(b)
    # Timestamps count from each adapter's own first Packet, and each decoder starts at
    # a different frame of the stream: align by content, then compare past the start.
    by_time_b = {p.timestamp: p for p in pb}
    best: tuple[float, int] = (float("inf"), 0)
    for shift in range(-50, 51):
        pairs = [(p, by_time_b.get(p.timestamp + shift * 960)) for p in pa[10:60]]
        matched = [(x, y) for x, y in pairs if y is not None]
        if len(matched) < 30:
            continue
        left = np.frombuffer(b"".join(x.payload for x, _ in matched), "<i2").astype(float)
        right = np.frombuffer(b"".join(y.payload for _, y in matched), "<i2").astype(float)
        best = min(best, (float(np.abs(left - right).max()), shift))
    worst_difference, shift = best
    print(f"aligned at {shift} frames; largest sample difference {worst_difference:.0f}")
    assert worst_difference < 300  # of a 12 000 amplitude tone: the same audio


async def test_misbehaving_endpoints_do_not_disturb_others(stack: Stack) -> None:
    """One endpoint floods garbage back, one never reads; a third keeps its stream."""
    sessions, session_id, _ = await publish_tone(stack)

    async def garbage(ws: Any) -> None:
        for _ in range(200):
            await ws.send(b"\xff" * 4000)
            await ws.send("not a packet")

    done = asyncio.Event()

    async def never_read(ws: Any) -> None:
        await done.wait()

    async with endpoint() as noisy, endpoint() as stuck, endpoint() as good:
        noisy.on_connect = garbage
        stuck.on_connect = never_read
        items = await create(stack, [egress_item(e.url, session_id) for e in (noisy, stuck, good)])
        (conn,) = await good.wait_connections(1)
        await asyncio.sleep(3.0)
        got = packets(conn)
        states = [await view(stack, i["adapterId"]) for i in items]
        await sessions.close()
        done.set()
    assert [p.sequenceNumber for p in got] == list(range(len(got)))
    assert len(got) >= 135
    assert [s["state"] for s in states] == ["active", "active", "active"]


async def test_close_via_api_sends_1000_quickly(stack: Stack) -> None:
    sessions, session_id, _ = await publish_tone(stack)
    async with endpoint() as ep, stack.client() as client:
        (item,) = await create(stack, [egress_item(ep.url, session_id)])
        (conn,) = await ep.wait_connections(1)
        await asyncio.sleep(0.5)
        started = time.monotonic()
        resp = await client.post(
            "/adapters/websocket/close", json={"tracks": [{"adapterId": item["adapterId"]}]}
        )
        await asyncio.wait_for(conn.closed.wait(), 1.0)
        elapsed = time.monotonic() - started
        await sessions.close()
    assert conn.close_code == 1000
    assert elapsed < 1.0
    body = resp.json()["tracks"][0]
    assert body["status"] == "closed"
    # Every byte sent was received: the final counters are written at close.
    assert body["bytesProcessed"] == sum(len(m) for m in conn.messages if isinstance(m, bytes))
