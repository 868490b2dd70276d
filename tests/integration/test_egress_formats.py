"""Egress formats, stream events and per-adapter options end to end (E1, E4, E5, E8).

Real processes (API, worker pool, SFU), a real aiortc publisher and real WebSocket
endpoints; the publisher's stereo tone is 440 Hz left and 660 Hz right.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import signal
import time
from typing import Any

import av
import numpy as np
import numpy.typing as npt
import pytest

from sluice.wire.packet import encode
from sluice.wire.packet_pb2 import Packet
from tests.integration.audio import dominant_frequency, pcm_channels
from tests.integration.helpers import (
    Connection,
    Endpoint,
    Stack,
    drop_connection,
    egress_item,
    endpoint,
)
from tests.integration.test_egress import create, packets, publish_tone, view
from tests.integration.video import ColourCycleTrack, decode_jpeg
from worker.protocol.g711 import mulaw_decode

pytestmark = pytest.mark.integration


def item(ep: Endpoint, session_id: str, codec: str = "pcm", **fields: Any) -> dict[str, Any]:
    return {**egress_item(ep.url, session_id, codec=codec), **fields}


def events(conn: Connection) -> list[dict[str, Any]]:
    return [json.loads(m) for m in conn.messages if isinstance(m, str)]


def level_at(mono: npt.NDArray[np.float64], rate: int, *hz: float) -> float:
    """Peak amplitude of the first `hz` component (least squares, every `hz` fitted)."""
    t = np.arange(len(mono)) / rate
    basis = np.column_stack([f(2 * np.pi * h * t) for h in hz for f in (np.sin, np.cos)])
    coefficients = np.linalg.lstsq(basis, mono, rcond=None)[0]
    return float(np.hypot(coefficients[0], coefficients[1]))


def stamps_step(got: list[Packet]) -> set[int]:
    return {b.timestamp - a.timestamp for a, b in itertools.pairwise(got)}


async def lose_connection(ep: Endpoint, conn: Connection, refuse_s: float) -> None:
    """The connection drops (no close frame) and re-dials are refused for `refuse_s`."""
    ep.reject_status = 503
    assert conn.ws is not None
    await drop_connection(conn.ws)
    await asyncio.sleep(refuse_s)
    ep.reject_status = None


def opus_decoder() -> Any:
    codec = av.CodecContext.create("libopus", "r")
    codec.format, codec.layout, codec.sample_rate = "s16", "stereo", 48_000
    return codec


def decode_opus(codec: Any, payload: bytes) -> bytes:
    frames = codec.decode(av.Packet(payload))
    return b"".join(bytes(f.planes[0])[: f.samples * 4] for f in frames)


# --- audio formats ----------------------------------------------------------------------


async def test_16k_mono_and_8k_mulaw(stack: Stack) -> None:
    sessions, session_id, _ = await publish_tone(stack)
    async with endpoint() as stt, endpoint() as phone:
        wide, _ = await create(
            stack,
            [
                item(stt, session_id, sampleRate=16000, channels=1, frameMs=100),
                item(phone, session_id, "mulaw"),
            ],
        )
        (wide_conn,) = await stt.wait_connections(1)
        (narrow_conn,) = await phone.wait_connections(1)
        await asyncio.sleep(3.0)
        wide_got, narrow_got = packets(wide_conn), packets(narrow_conn)
        wide_view = await view(stack, wide["adapterId"])
        await sessions.close()
    print(f"16 kHz mono 100 ms: {len(wide_got)} in 3 s; 8 kHz μ-law: {len(narrow_got)}")
    assert wide_view["settings"] == {
        "sampleRate": 16000,
        "channels": 1,
        "frameMs": 100,
        "events": False,
        "reconnectWindowS": 5.0,
        "framing": "packet",
    }
    # 10 Packets a second of 3 200 bytes, +1 600 samples each, numbered from 0.
    assert 25 <= len(wide_got) <= 36  # ~10 a second for 3 s, what the backlog held
    assert {len(p.payload) for p in wide_got} == {3200}
    assert [p.sequenceNumber for p in wide_got] == list(range(len(wide_got)))
    assert wide_got[0].timestamp == 0 and stamps_step(wide_got) == {1600}
    mono = np.frombuffer(b"".join(p.payload for p in wide_got[3:]), "<i2").astype(np.float64)
    # The mean of left and right: both tones, each at half the publisher's 12 000.
    assert level_at(mono, 16000, 440, 660) == pytest.approx(6000, rel=0.05)
    assert level_at(mono, 16000, 660, 440) == pytest.approx(6000, rel=0.05)
    # μ-law at 8 kHz mono: 160 bytes per 20 ms, +160 each.
    assert 130 <= len(narrow_got) <= 180
    assert {len(p.payload) for p in narrow_got} == {160}
    assert narrow_got[0].timestamp == 0 and stamps_step(narrow_got) == {160}
    phone_mono = mulaw_decode(b"".join(p.payload for p in narrow_got[10:])).astype(np.float64)
    assert level_at(phone_mono, 8000, 440, 660) == pytest.approx(6000, rel=0.06)
    assert level_at(phone_mono, 8000, 660, 440) == pytest.approx(6000, rel=0.06)


async def test_opus_is_forwarded_and_the_default_is_what_it_always_was(stack: Stack) -> None:
    """An `opus` adapter's packets decode to the tone; a Cloudflare-shaped `pcm` adapter
    on the same track sends exactly what libopus makes of those packets, one binary
    Packet per Opus frame, nothing else, bytes laid out as the wire codec lays them."""
    sessions, session_id, _ = await publish_tone(stack)
    async with endpoint() as raw, endpoint() as classic:
        # The opus adapter first: its stream covers every frame the pcm one gets.
        (opus,) = await create(stack, [item(raw, session_id, "opus")])
        (opus_conn,) = await raw.wait_connections(1)
        await create(stack, [egress_item(classic.url, session_id)])  # only Cloudflare's fields
        (pcm_conn,) = await classic.wait_connections(1)
        await asyncio.sleep(3.0)
        opus_view = await view(stack, opus["adapterId"])
        await sessions.close()
    opus_got, pcm_got = packets(opus_conn), packets(pcm_conn)
    print(f"opus: {len(opus_got)} packets, sizes {sorted({len(p.payload) for p in opus_got})}")
    assert opus_view["settings"] == {
        "events": False,
        "reconnectWindowS": 5.0,
        "framing": "packet",
    }
    assert [p.sequenceNumber for p in opus_got] == list(range(len(opus_got)))
    assert opus_got[0].timestamp == 0 and stamps_step(opus_got) == {960}
    codec = opus_decoder()
    pcm = b"".join(decode_opus(codec, p.payload) for p in opus_got)
    left, right = pcm_channels([pcm[48_000 * 4 // 5 :]])
    assert abs(dominant_frequency(left) - 440) < 5
    assert abs(dominant_frequency(right) - 660) < 5

    # The Cloudflare-shaped adapter: binary only, the old layout, the old numbering.
    assert all(isinstance(m, bytes) for m in pcm_conn.messages)
    assert [m for m in pcm_conn.messages] == [
        encode(p.sequenceNumber, p.timestamp, p.payload) for p in pcm_got
    ]
    assert {len(p.payload) for p in pcm_got} == {3840}
    assert [p.sequenceNumber for p in pcm_got] == list(range(len(pcm_got)))
    assert pcm_got[0].timestamp == 0 and stamps_step(pcm_got) == {960}
    # Its payloads: a fresh libopus decoder fed the same frames from the same first one
    # makes the very same bytes. Find that frame in the opus adapter's stream.
    first = next(
        k
        for k in range(len(opus_got))
        if decode_opus(opus_decoder(), opus_got[k].payload) == pcm_got[0].payload
    )
    codec = opus_decoder()
    expected = [decode_opus(codec, p.payload) for p in opus_got[first:]]
    common = min(len(expected), len(pcm_got))
    assert common > 100
    assert [p.payload for p in pcm_got[:common]] == expected[:common]


# --- events and the reconnect window ---------------------------------------------------


@pytest.mark.workers(2)
async def test_events_start_every_connection_and_stop_ends_it(stack: Stack) -> None:
    sessions, session_id, _ = await publish_tone(stack)
    async with endpoint() as ep, endpoint() as once, stack.client() as client:
        told, at_most_once = await create(
            stack,
            [
                item(ep, session_id, sampleRate=16000, channels=1, events=True),
                item(once, session_id, reconnectWindowS=0),
            ],
        )
        (first,) = await ep.wait_connections(1)
        (only,) = await once.wait_connections(1)
        await asyncio.sleep(1.0)
        await lose_connection(once, only, 0.0)
        lost_at = time.monotonic()
        await lose_connection(ep, first, 1.0)
        _, second = await ep.wait_connections(2, timeout_s=5)
        await asyncio.sleep(1.0)
        once_view = await view(stack, at_most_once["adapterId"])
        resp = await client.post(
            "/adapters/websocket/close", json={"tracks": [{"adapterId": told["adapterId"]}]}
        )
        assert resp.status_code == 200
        await asyncio.wait_for(second.closed.wait(), 5)
        await sessions.close()
    fmt = {"codec": "pcm", "sampleRate": 16000, "channels": 1, "frameMs": 20, "framing": "packet"}
    for number, conn in enumerate((first, second), start=1):
        start = json.loads(conn.messages[0])  # first on every connection
        media = packets(conn)
        assert start == {
            "event": "start",
            "adapterId": told["adapterId"],
            "sessionId": session_id,
            "trackName": "mic",
            "connection": number,
            "format": fmt,
            "sequenceNumber": media[0].sequenceNumber,
            "timestamp": media[0].timestamp,
        }
    assert packets(first)[0].sequenceNumber == 0
    # Nothing was lost (the backlog covers the window): no gap, and the stop is last.
    assert [e["event"] for e in events(second)] == ["start", "stop"]
    assert json.loads(second.messages[-1]) == {"event": "stop", "reason": "api_close"}
    numbers = [p.sequenceNumber for p in packets(first) + packets(second)]
    assert sorted(set(range(numbers[-1] + 1)) - set(numbers)) == []
    # reconnectWindowS 0: closed at the first loss, never re-dialled, no event sent.
    assert (once_view["state"], once_view["closeReason"]) == ("closed", "endpoint_unavailable")
    assert len(once.attempts) == 1 and events(only) == []
    print(f"window 0 closed within {time.monotonic() - lost_at:.1f} s of the check")


@pytest.mark.workers(2)
async def test_a_resumed_adapter_says_start_then_gap(stack: Stack) -> None:
    """The pipeline process dies: on the connection the resumed process makes, `start`
    (connection 2) comes first, then a `gap` from where the lost process last saved."""
    sessions, session_id, _ = await publish_tone(stack)
    async with endpoint() as ep:
        (told,) = await create(stack, [item(ep, session_id, "mulaw", events=True)])
        (first,) = await ep.wait_connections(1)
        await asyncio.sleep(2.0)
        os.kill(stack.pipeline_pid(told["adapterId"]), signal.SIGKILL)
        _, second = await ep.wait_connections(2, timeout_s=10)
        await asyncio.sleep(1.0)
        await sessions.close()
    before, after = packets(first), packets(second)
    assert [e["event"] for e in events(first)] == ["start"]
    start, gap = events(second)[:2]
    assert isinstance(second.messages[0], str) and isinstance(second.messages[1], str)
    assert (start["event"], start["connection"]) == ("start", 2)
    assert start["sequenceNumber"] == after[0].sequenceNumber
    assert start["timestamp"] == after[0].timestamp
    assert gap["event"] == "gap" and gap["toTimestamp"] == after[0].timestamp
    # It starts where the lost process last saved its position (it heartbeats every
    # second), so it may cover Packets the endpoint got before the process died.
    assert before[0].timestamp < gap["fromTimestamp"] < after[0].timestamp
    assert gap["droppedFrames"] == after[0].sequenceNumber - gap_from_sequence(gap, before)


def gap_from_sequence(gap: dict[str, Any], before: list[Packet]) -> int:
    """The sequenceNumber of the first Packet the gap says is missing (160 per number)."""
    by_timestamp = {p.timestamp: p.sequenceNumber for p in before}
    if gap["fromTimestamp"] in by_timestamp:
        return by_timestamp[gap["fromTimestamp"]]
    return before[-1].sequenceNumber + (gap["fromTimestamp"] - before[-1].timestamp) // 160


# --- snapshots --------------------------------------------------------------------------


@pytest.mark.workers(3, pickup_timeout_s=5)
async def test_snapshot_options_and_a_gap_for_pictures_dropped_while_away(stack: Stack) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(ColourCycleTrack(640, 480), "cam", codec="VP8")
    async with endpoint() as fast, endpoint() as slow, endpoint() as away:
        async with stack.client() as client:
            for codec in ("pcm", "mulaw", "opus"):  # audio codecs need an audio track
                wrong = item(fast, session_id, codec, trackName="cam")
                resp = await client.post("/adapters/websocket/new", json={"tracks": [wrong]})
                assert (resp.status_code, resp.json()["errorCode"]) == (400, "invalid_params")
        await create(
            stack,
            [
                item(fast, session_id, "jpeg", fps=4, maxWidth=320, trackName="cam"),
                item(slow, session_id, "jpeg", fps=0.5, maxHeight=120, quality=20, trackName="cam"),
                item(away, session_id, "jpeg", fps=5, events=True, trackName="cam"),
            ],
        )
        (fast_conn,) = await fast.wait_connections(1)
        (slow_conn,) = await slow.wait_connections(1)
        (away_first,) = await away.wait_connections(1)
        await asyncio.wait_for(fast_conn.got_message.wait(), 5)
        await asyncio.sleep(1.0)
        await lose_connection(away, away_first, 1.5)  # ~7 pictures made while away
        _, away_second = await away.wait_connections(2, timeout_s=5)
        await asyncio.sleep(4.0)
        await sessions.close()
    fast_got, slow_got = packets(fast_conn), packets(slow_conn)
    print(f"fps 4: {len(fast_got)} JPEGs; fps 0.5: {len(slow_got)}")
    assert 18 <= len(fast_got) <= 30  # ~6.5 s at 4 a second
    assert {decode_jpeg(p.payload).shape for p in fast_got} == {(240, 320, 3)}  # 640x480 fit
    fast_steps = [b.timestamp - a.timestamp for a, b in itertools.pairwise(fast_got)]
    assert np.median(fast_steps) == pytest.approx(90_000 / 4, rel=0.2)
    assert 3 <= len(slow_got) <= 5
    assert {decode_jpeg(p.payload).shape for p in slow_got} == {(120, 160, 3)}

    first_events, second_events = events(away_first), events(away_second)
    assert [e["event"] for e in first_events] == ["start"]
    assert first_events[0]["format"] == {"codec": "jpeg", "fps": 5.0, "framing": "packet"}
    # The source's close at the end reaches the endpoint as `stop` if it is still there.
    stopped = [e["event"] for e in second_events[2:]] == ["stop"]
    assert [e["event"] for e in second_events[:2]] == ["start", "gap"]
    assert len(second_events) == 2 + stopped
    start, gap = second_events[:2]
    assert away_second.messages[0] == json.dumps(start, separators=(",", ":"))
    # The gap goes right before the first picture after those dropped while away (a
    # picture whose write the loss cut short may go first, then the gap).
    stream = [*packets(away_first), *packets(away_second)]
    texts = [i for i, m in enumerate(away_second.messages) if isinstance(m, str)]
    assert len(texts) == 2 + stopped and texts[0] == 0
    following = Packet.FromString(away_second.messages[texts[1] + 1])
    before = stream[stream.index(following) - 1]
    assert start["connection"] == 2
    assert start["sequenceNumber"] == packets(away_second)[0].sequenceNumber
    assert gap["toTimestamp"] == following.timestamp
    assert gap["droppedFrames"] == following.sequenceNumber - before.sequenceNumber - 1
    assert gap["droppedFrames"] >= 4
    assert before.timestamp < gap["fromTimestamp"] < gap["toTimestamp"]
