"""Raw framing (extensions.md E3) end to end: the media alone in each binary message.

Real processes (API, worker pool, SFU), a real aiortc publisher (a stereo tone, 440 Hz
left and 660 Hz right, or a colour-cycling camera) and real WebSocket endpoints, among
them a stand-in for a speech-to-text vendor's socket that takes raw audio only
(`vendor_stt`). The endpoint's `Authorization` header such sockets also want is E6's
(`headers`), tested with it, not here.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import numpy as np
import pytest

from examples.audio import mulaw_encode
from sluice_endpoint import (
    AsyncSluiceClient,
    AudioFormat,
    AudioFrame,
    EgressItem,
    EgressStream,
    Endpoint,
    IngestItem,
    IngestSender,
    url_of,
)
from tests.integration.audio import (
    FRAME,
    RATE,
    Recording,
    dominant_frequency,
    mono_tone,
    subscribe_to_ingest,
)
from tests.integration.helpers import (
    APP,
    SECRET,
    Connection,
    Stack,
    egress_item,
    endpoint,
    ingest_item,
)
from tests.integration.test_egress import create, publish_tone, view
from tests.integration.test_egress_formats import decode_opus, level_at, opus_decoder
from tests.integration.test_lifecycle import wait_state
from tests.integration.vendor_stt import CLOSE_INVALID_PAYLOAD, vendor_stt
from tests.integration.video import ColourCycleTrack, decode_jpeg

pytestmark = pytest.mark.integration
TONE_HZ = (440, 660)  # the publisher's left and right


def remote(url: str, session_id: str, codec: str = "pcm", **fields: Any) -> dict[str, Any]:
    return {**egress_item(url, session_id, codec=codec), **fields}


async def close_adapter(stack: Stack, adapter_id: str) -> dict[str, Any]:
    async with stack.client() as client:
        resp = await client.post(
            "/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]}
        )
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["tracks"][0])


def binary(conn: Connection) -> list[bytes]:
    return [m for m in conn.messages if isinstance(m, bytes)]


def texts(conn: Connection) -> list[dict[str, Any]]:
    return [json.loads(m) for m in conn.messages if isinstance(m, str)]


# --- egress ---------------------------------------------------------------------------


async def test_linear16_streams_straight_into_a_vendor_socket(stack: Stack) -> None:
    """`framing: raw`, pcm 16 kHz mono: the vendor socket takes every frame, and hears
    both tones at their level. The same format in Packets is refused at once."""
    sessions, session_id, _ = await publish_tone(stack)
    async with vendor_stt() as stt, vendor_stt() as strict:
        raw, packet = await create(
            stack,
            [
                remote(stt.url, session_id, framing="raw", sampleRate=16000, channels=1),
                # Cloudflare's framing (the default) into the same kind of socket.
                remote(strict.url, session_id, sampleRate=16000, channels=1, reconnectWindowS=0),
            ],
        )
        await asyncio.sleep(3.5)
        raw_view = await view(stack, raw["adapterId"])
        packet_view = await view(stack, packet["adapterId"])
        closed = await close_adapter(stack, raw["adapterId"])
        await asyncio.wait_for(stt.closed.wait(), 5)
        await sessions.close()

    mono = stt.mono()
    print(
        f"vendor socket: {len(stt.arrivals)} frames of {stt.frame_bytes} B, "
        f"{stt.frames_per_s():.1f}/s, median {stt.median_interval_ms():.1f} ms apart; "
        f"refused Packets with {strict.refusals}"
    )
    assert stt.handshakes_refused == [] and stt.refusals == []  # every message one frame
    assert (stt.connections, stt.close_codes) == (1, [1000])  # closed by the API, once
    assert raw_view["settings"]["framing"] == "raw"
    assert raw_view["counters"]["reconnects"] == 0
    assert len(stt.arrivals) >= 140  # 50 a second for 3.5 s and more
    # The cadence: a 20 ms frame as the publisher's audio comes, not in bursts.
    assert 35 <= stt.frames_per_s() <= 65
    assert 10 <= stt.median_interval_ms() <= 30
    steady = mono[16000 // 2 :]  # past the resampler's start
    assert level_at(steady, 16000, *TONE_HZ) == pytest.approx(6000, rel=0.05)
    assert level_at(steady, 16000, *reversed(TONE_HZ)) == pytest.approx(6000, rel=0.05)
    assert dominant_frequency(steady, 16000) in (
        pytest.approx(440, abs=3),
        pytest.approx(660, abs=3),
    )
    # The counters count what was written: the frames alone, no framing.
    assert closed["bytesProcessed"] == len(stt.audio)

    # A Packet of one frame is 643 bytes or more: refused at the first message, and with
    # a window of 0 the adapter closes rather than re-dial.
    assert strict.refusals[0][0] == CLOSE_INVALID_PAYLOAD
    assert strict.refusals[0][1].startswith("64") and strict.audio == bytearray()
    assert packet_view["settings"]["framing"] == "packet"
    assert (packet_view["state"], packet_view["closeReason"]) == ("closed", "endpoint_unavailable")


async def test_mulaw_into_a_vendor_socket(stack: Stack) -> None:
    sessions, session_id, _ = await publish_tone(stack)
    async with vendor_stt("mulaw", 8000) as stt:
        (raw,) = await create(stack, [remote(stt.url, session_id, "mulaw", framing="raw")])
        await asyncio.sleep(3.0)
        closed = await close_adapter(stack, raw["adapterId"])
        await sessions.close()
    print(f"μ-law: {len(stt.arrivals)} frames of {stt.frame_bytes} B, {stt.frames_per_s():.1f}/s")
    assert stt.frame_bytes == 160  # 20 ms of 8 kHz mono, one byte a sample
    assert stt.refusals == [] and stt.connections == 1
    assert len(stt.arrivals) >= 120  # 50 a second for 3 s and more
    steady = stt.mono()[4000:]
    assert level_at(steady, 8000, *TONE_HZ) == pytest.approx(6000, rel=0.06)
    assert level_at(steady, 8000, *reversed(TONE_HZ)) == pytest.approx(6000, rel=0.06)
    assert closed["bytesProcessed"] == len(stt.audio)


async def test_opus_packets_alone_with_events(stack: Stack) -> None:
    """Each binary message is one Opus packet as the publisher made it; the events still
    come as text, `start` saying the framing, `stop` last."""
    sessions, session_id, _ = await publish_tone(stack)
    async with endpoint() as ep:
        (raw,) = await create(
            stack, [remote(ep.url, session_id, "opus", framing="raw", events=True)]
        )
        (conn,) = await ep.wait_connections(1)
        await asyncio.sleep(3.0)
        closed = await close_adapter(stack, raw["adapterId"])
        await asyncio.wait_for(conn.closed.wait(), 5)
        await sessions.close()
    frames = binary(conn)
    events = texts(conn)
    print(f"opus raw: {len(frames)} packets, sizes {min(map(len, frames))}-{max(map(len, frames))}")
    assert [e["event"] for e in events] == ["start", "stop"]
    assert isinstance(conn.messages[0], str) and isinstance(conn.messages[-1], str)
    assert events[0]["format"] == {
        "codec": "opus",
        "sampleRate": 48000,
        "channels": 2,
        "framing": "raw",
    }
    assert events[0]["sequenceNumber"] == 0 and events[0]["timestamp"] == 0
    assert 130 <= len(frames) <= 170
    codec = opus_decoder()
    decoded = [decode_opus(codec, frame) for frame in frames]
    assert all(len(pcm) == FRAME * 4 for pcm in decoded)  # each one Opus packet of 20 ms
    stereo = np.frombuffer(b"".join(decoded[40:]), "<i2").reshape(-1, 2).astype(np.float64)
    assert abs(dominant_frequency(stereo[:, 0]) - 440) < 5
    assert abs(dominant_frequency(stereo[:, 1]) - 660) < 5
    assert closed["bytesProcessed"] == sum(map(len, frames))  # text events not counted


async def test_jpeg_alone(stack: Stack) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(ColourCycleTrack(320, 240), "cam", codec="VP8")
    async with endpoint() as ep:
        item = {**remote(ep.url, session_id, "jpeg", framing="raw", fps=4), "trackName": "cam"}
        (raw,) = await create(stack, [item])
        (conn,) = await ep.wait_connections(1)
        await asyncio.wait_for(conn.got_message.wait(), 10)
        await asyncio.sleep(2.0)
        shown = await view(stack, raw["adapterId"])
        closed = await close_adapter(stack, raw["adapterId"])
        await asyncio.wait_for(conn.closed.wait(), 5)
        await sessions.close()
    pictures = binary(conn)
    print(f"raw jpeg: {len(pictures)} pictures, {sum(map(len, pictures))} B")
    assert len(pictures) >= 6 and len(conn.messages) == len(pictures)
    assert {decode_jpeg(p).shape for p in pictures} == {(240, 320, 3)}  # each a whole JPEG
    assert shown["settings"]["framing"] == "raw"
    assert closed["bytesProcessed"] == sum(map(len, pictures))


# --- ingest ---------------------------------------------------------------------------

CHUNK = 16_383  # odd: every other message splits a 16-bit sample


async def test_ingest_takes_raw_pcm_and_marks_still_work(stack: Stack) -> None:
    rate = 24_000
    data = mono_tone(440, rate, 3.0).astype("<i2").tobytes()
    ready = asyncio.Event()

    async def push(ws):  # type: ignore[no-untyped-def]
        await ready.wait()
        for offset in range(0, len(data), CHUNK):  # unpaced, as text-to-speech sends
            await ws.send(data[offset : offset + CHUNK])  # the samples alone
        await ws.send(b"")  # end of segment: a zero-length message, as with Packets
        await ws.send(json.dumps({"event": "mark", "name": "said"}))  # text: control

    recording = Recording()
    async with endpoint() as ep:
        ep.on_connect = push
        item = {**ingest_item(ep.url), "sampleRate": rate, "channels": 1, "framing": "raw"}
        adapter_id, sessions, task = await subscribe_to_ingest(stack, item, recording)
        ready.set()
        (conn,) = await ep.wait_connections(1)
        await asyncio.wait_for(conn.got_message.wait(), 8)  # the mark, once played
        await asyncio.sleep(0.5)
        closed = await close_adapter(stack, adapter_id)
        task.cancel()
        await sessions.close()
        shown = await view(stack, adapter_id)

    assert shown["settings"] == {
        "inputCodec": "pcm",
        "sampleRate": rate,
        "channels": 1,
        "framing": "raw",
    }
    assert conn.messages == ['{"event":"mark","name":"said","cleared":false}']
    # Every binary message was audio (the empty one too), counted as it was on the wire.
    assert shown["counters"]["skipped"] == 0
    assert shown["counters"]["packets"] == -(-len(data) // CHUNK) + 1
    assert closed["bytesProcessed"] == shown["counters"]["bytes"] == len(data)
    first, last = recording.tone_span()
    assert first >= 0, "no tone arrived"
    heard_s = (last - first + 1) * FRAME / RATE
    loud = recording.loud_frames()[first : last + 1]
    print(f"raw 24 kHz mono: heard {heard_s:.3f} s")
    assert abs(heard_s - 3.0) <= 0.05 * 3.0 and loud.all()
    tone = recording.stereo[first * FRAME : (last + 1) * FRAME].astype(np.float64)
    for channel in (0, 1):
        assert abs(dominant_frequency(tone[:, channel]) - 440) < 5


async def test_ingest_raw_limit_is_32_kib(stack: Stack) -> None:
    async def push(ws):  # type: ignore[no-untyped-def]
        await ws.send(mulaw_encode(mono_tone(440, 8000, 5.0)[:32_768]))  # the limit: allowed
        await ws.send(bytes(32_769))

    async with endpoint() as ep:
        ep.on_connect = push
        item = {**ingest_item(ep.url), "inputCodec": "mulaw", "framing": "raw"}
        async with stack.client() as client:
            resp = await client.post("/adapters/websocket/new", json={"tracks": [item]})
            adapter_id = resp.json()["tracks"][0]["adapterId"]
            (conn,) = await ep.wait_connections(1)
            await asyncio.wait_for(conn.closed.wait(), 5)
        shown = await wait_state(stack, adapter_id, "closed", 5)
    assert conn.close_code == 1009
    assert shown["closeReason"] == "message_too_big"
    assert (shown["counters"]["packets"], shown["counters"]["bytes"]) == (1, 32_768)


# --- the SDK on both ends --------------------------------------------------------------


async def test_sdk_speaks_raw_into_ingest_and_hears_it_back_raw(stack: Stack) -> None:
    """The SDK's sender pushes raw 24 kHz mono into an ingest adapter; an egress adapter
    on the new track streams it raw at 16 kHz mono back to the SDK's reader."""
    speak_format = AudioFormat(sample_rate=24_000, channels=1, framing="raw")
    hear_format = AudioFormat(sample_rate=16_000, channels=1, framing="raw")
    tone = mono_tone(440, 24_000, 2.0)
    heard: list[AudioFrame] = []
    listening, sent = asyncio.Event(), asyncio.Event()
    sdk_endpoint = Endpoint()

    @sdk_endpoint.ingest("/speak", speak_format)
    async def speak(sender: IngestSender) -> None:
        await listening.wait()
        await sender.send(tone.tobytes())
        await sender.end()
        sent.set()
        await sender.wait_closed()

    @sdk_endpoint.egress("/hear", hear_format)
    async def hear(stream: EgressStream) -> None:
        async for item in stream:
            if isinstance(item, AudioFrame):
                heard.append(item)
                listening.set()

    async with (
        sdk_endpoint.serve() as server,
        AsyncSluiceClient(f"{stack.base_url}/v1/apps/{APP}", SECRET) as client,
    ):
        base = url_of(server)
        ingest = await client.create_adapter(
            IngestItem("tts", f"{base}/speak", sample_rate=24_000, channels=1, framing="raw")
        )
        assert ingest.session_id is not None and ingest.adapter_id is not None
        egress = await client.create_adapter(
            EgressItem(
                ingest.session_id,
                "tts",
                f"{base}/hear",
                sample_rate=16_000,
                channels=1,
                framing="raw",
            )
        )
        await asyncio.wait_for(sent.wait(), 10)
        await asyncio.sleep(2.5)
        await client.close_adapters([egress.adapter_id or "", ingest.adapter_id])
    pcm = np.concatenate([f.array() for f in heard]).astype(np.float64).reshape(-1)
    loud = np.flatnonzero(np.abs(pcm) > 3000)
    assert len(loud), "nothing loud was heard"
    voiced = pcm[loud[0] : loud[-1] + 1]
    print(f"SDK round trip: {len(heard)} frames heard, {len(voiced) / 16000:.2f} s of tone")
    assert {len(f.data) for f in heard} == {640}  # 20 ms of 16 kHz mono, no Packet
    assert abs(len(voiced) / 16000 - 2.0) <= 0.1
    assert abs(dominant_frequency(voiced, 16000) - 440) < 5
