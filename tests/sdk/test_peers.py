"""The SDK's I/O against small WebSocket peers that play Sluice as the spec says.

The server on main does not speak the extensions yet (events, clear/mark, raw framing,
signed dials); these peers do, so the SDK is checked against the contract itself.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from sluice.wire.packet_pb2 import Packet as ProtoPacket
from sluice_endpoint import (
    CLOUDFLARE_PCM,
    AudioFormat,
    AudioFrame,
    EgressStream,
    Endpoint,
    Gap,
    IngestSender,
    SenderClosed,
    Start,
    Stop,
    StreamItem,
    encode_packet,
    sign_dial,
    url_of,
)

FRAME = bytes(3840)


def pcm(n: int) -> bytes:
    return encode_packet(n, n * 960, FRAME)


def start(connection: int, sequence_number: int, fmt: dict[str, Any] | None = None) -> str:
    return json.dumps(
        {
            "event": "start",
            "adapterId": "ad1",
            "sessionId": "s1",
            "trackName": "mic",
            "connection": connection,
            "format": fmt or {"codec": "pcm", "sampleRate": 48000, "channels": 2, "frameMs": 20},
            "sequenceNumber": sequence_number,
            "timestamp": sequence_number * 960,
        }
    )


class Collected:
    def __init__(self) -> None:
        self.streams: list[EgressStream] = []
        self.items: list[list[StreamItem]] = []
        self.done = asyncio.Event()


@asynccontextmanager
async def egress_endpoint(
    fmt: AudioFormat = CLOUDFLARE_PCM, stop_after: int | None = None, **options: Any
) -> AsyncIterator[tuple[str, Collected]]:
    endpoint = Endpoint(**options)
    seen = Collected()

    @endpoint.egress("/stt", fmt)
    async def handler(stream: EgressStream) -> None:
        items: list[StreamItem] = []
        seen.streams.append(stream)
        seen.items.append(items)
        async for item in stream:
            items.append(item)
            if stop_after is not None and len(items) == stop_after:
                break
        seen.done.set()

    async with endpoint.serve() as server:
        yield url_of(server), seen


async def test_events_and_a_reconnect_make_one_stream() -> None:
    async with egress_endpoint() as (url, seen):
        headers = {"Sluice-Adapter-Id": "ad1"}
        first = await connect(f"{url}/stt", additional_headers=headers)
        await first.send(start(1, 0))
        for n in range(5):
            await first.send(pcm(n))
        await asyncio.sleep(0.05)
        first.transport.abort()  # lost, no close frame
        second = await connect(f"{url}/stt", additional_headers=headers)
        await second.send(start(2, 8))
        await second.send(json.dumps({"event": "gap", "droppedFrames": 3, "fromTimestamp": 4800,
                                      "toTimestamp": 7680}))  # fmt: skip
        for n in range(8, 10):
            await second.send(pcm(n))
        await second.send(json.dumps({"event": "stop", "reason": "api_close"}))
        await second.close(1000)
        await asyncio.wait_for(seen.done.wait(), 5)
    (items,) = seen.items
    kinds = [type(i).__name__ for i in items]
    assert kinds == ["Start"] + ["AudioFrame"] * 5 + ["Start", "Gap"] + ["AudioFrame"] * 2 + [
        "Stop"
    ]
    assert [i.connection for i in items if isinstance(i, Start)] == [1, 2]
    assert items[7] == Gap(4800, 7680, 3, 48_000, reported_by="sluice")
    assert items[-1] == Stop("api_close")
    (stream,) = seen.streams
    assert stream.end is not None and stream.end.reason == "api_close" and stream.end.complete
    assert (stream.connections, stream.adapter_id) == (2, "ad1")


async def test_cloudflare_shaped_stream_detects_gaps_and_repeats_itself(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "sluice_endpoint")
    async with egress_endpoint() as (url, seen):
        first = await connect(f"{url}/stt?token=x")
        for n in range(5):
            await first.send(pcm(n))
        await first.close(1011)  # anything but 1000: Sluice re-dials
        second = await connect(f"{url}/stt?token=x")
        for n in (4, 5, 9):  # a repeat, then three lost
            await second.send(pcm(n))
        await second.close(1000, "track ended")
        await asyncio.wait_for(seen.done.wait(), 5)
    (items,) = seen.items
    frames = [i for i in items if isinstance(i, AudioFrame)]
    assert [f.sequence_number for f in frames] == [0, 1, 2, 3, 4, 5, 9]
    assert [i for i in items if isinstance(i, Gap)] == [Gap(6 * 960, 9 * 960, 3, 48_000)]
    assert frames[0].array().shape == (960, 2)
    (stream,) = seen.streams
    assert stream.repeats == 1
    assert stream.end is not None and stream.end.reason == "track ended"
    lines = [r.getMessage() for r in caplog.records if r.name == "sluice_endpoint"]
    assert any("egress stream ended: /stt" in line for line in lines), lines
    assert not any("token" in line for line in lines), lines  # query strings hold tokens


async def test_a_lost_stream_ends_incomplete_after_the_timeout() -> None:
    async with egress_endpoint(reconnect_timeout_s=0.3) as (url, seen):
        ws = await connect(f"{url}/stt")
        await ws.send(pcm(0))
        ws.transport.abort()
        await asyncio.wait_for(seen.done.wait(), 5)
    (stream,) = seen.streams
    assert stream.end is not None and not stream.end.complete and stream.end.reason == "lost"


async def test_a_handler_that_returns_closes_with_1000() -> None:
    async with egress_endpoint(stop_after=3) as (url, seen):
        ws = await connect(f"{url}/stt")
        for n in range(3):
            await ws.send(pcm(n))
        await asyncio.wait_for(ws.wait_closed(), 5)
    assert ws.close_code == 1000  # Sluice ends the adapter: endpoint_closed
    assert len(seen.items[0]) == 3


async def test_raw_mulaw_with_events() -> None:
    fmt = {"codec": "mulaw", "sampleRate": 8000, "channels": 1, "frameMs": 20, "framing": "raw"}
    async with egress_endpoint() as (url, seen):
        ws = await connect(f"{url}/stt")
        await ws.send(start(1, 0, fmt))
        for _ in range(3):
            await ws.send(b"\xff" * 160)
        await ws.close(1000)
        await asyncio.wait_for(seen.done.wait(), 5)
    frames = [i for i in seen.items[0] if isinstance(i, AudioFrame)]
    assert [(f.sequence_number, f.timestamp, f.format.codec) for f in frames] == [
        (0, 0, "mulaw"), (1, 160, "mulaw"), (2, 320, "mulaw")
    ]  # fmt: skip
    assert frames[0].pcm16() == bytes(320)


class FakeIngest:
    """Plays Sluice's side of an ingest connection with E2: answers marks and clears.

    Audio "plays out" when the end of a segment (an empty Packet) arrives: the marks
    queued by then are answered; a clear drops the marks still waiting.
    """

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.payloads: list[bytes] = []
        self.sizes: list[int] = []
        self.texts: list[dict[str, Any]] = []
        self.pending_marks: list[str] = []

    async def run(self) -> None:
        async for message in self.ws:
            if isinstance(message, bytes):
                self.sizes.append(len(message))
                self.payloads.append(ProtoPacket.FromString(message).payload)
                if message == b"":
                    await self.play_marks()
                continue
            event = json.loads(message)
            self.texts.append(event)
            if event["event"] == "mark":
                self.pending_marks.append(event["name"])
            elif event["event"] == "clear":
                for name in self.pending_marks:
                    await self.ws.send(json.dumps({"event": "mark", "name": name, "cleared": True}))
                self.pending_marks.clear()
                await self.ws.send(json.dumps({"event": "cleared", "droppedMs": 340}))

    async def play_marks(self) -> None:
        for name in self.pending_marks:
            await self.ws.send(json.dumps({"event": "mark", "name": name, "cleared": False}))
        self.pending_marks.clear()


async def test_ingest_chunks_marks_ends_and_clears() -> None:
    results: dict[str, Any] = {}
    endpoint = Endpoint()
    t = np.arange(24_000) / 24_000
    tone = (np.sin(2 * np.pi * 440 * t) * 8000).astype(np.int16)  # 1 s, 24 kHz mono

    @endpoint.ingest("/tts")
    async def tts(sender: IngestSender) -> None:
        await sender.send(tone, sample_rate=24_000, channels=1)  # → 48 kHz stereo
        first = await sender.mark("first")
        await sender.end()
        results["first"] = await first.wait()
        second = await sender.mark("second")
        results["dropped"] = await sender.clear()
        results["second"] = await second.wait()
        results["sent"] = sender.bytes_sent

    async with endpoint.serve() as server, connect(f"{url_of(server)}/tts") as ws:
        peer = FakeIngest(ws)
        await asyncio.wait_for(peer.run(), 10)
    assert ws.close_code == 1000  # the handler returned: the sender closed
    assert all(size <= 32_768 for size in peer.sizes)
    audio = b"".join(peer.payloads)
    assert peer.payloads[-1] == b""  # the end of the utterance: an empty Packet
    stereo = np.frombuffer(audio, "<i2").reshape(-1, 2)
    assert abs(len(stereo) - 48_000) <= 2 and (stereo[:, 0] == stereo[:, 1]).all()
    assert [t["event"] for t in peer.texts] == ["mark", "mark", "clear"]
    assert results["first"].cleared is False and results["second"].cleared is True
    assert results["dropped"] == 340
    assert results["sent"] == sum(peer.sizes) + sum(len(json.dumps(t)) for t in peer.texts)


async def test_clear_stops_a_paced_send_in_progress() -> None:
    sent_before_clear: dict[str, int] = {}
    endpoint = Endpoint()

    @endpoint.ingest("/tts", pace=True, lead_s=0.1, chunk_ms=20)
    async def tts(sender: IngestSender) -> None:
        talking = asyncio.create_task(sender.send(bytes(192_000 * 5)))  # 5 s, paced
        await asyncio.sleep(0.3)
        sent_before_clear["bytes"] = sender.bytes_sent
        await sender.clear()
        await asyncio.wait_for(talking, 1)  # returns at once: the rest is dropped
        sent_before_clear["after"] = sender.bytes_sent

    async with endpoint.serve() as server, connect(f"{url_of(server)}/tts") as ws:
        await asyncio.wait_for(FakeIngest(ws).run(), 10)
    # Paced: about lead + 0.3 s of audio went out, not 5 s.
    assert sent_before_clear["bytes"] < 192_000
    assert sent_before_clear["after"] - sent_before_clear["bytes"] < 4_000


async def test_a_1009_close_fails_pending_marks_and_sends() -> None:
    outcome: dict[str, Any] = {}
    endpoint = Endpoint()

    @endpoint.ingest("/tts")
    async def tts(sender: IngestSender) -> None:
        mark = await sender.mark("never")
        outcome["code"] = await sender.wait_closed()
        for name, attempt in (("wait", mark.wait()), ("send", sender.send(FRAME))):
            try:
                await attempt
            except SenderClosed as exc:
                outcome[name] = exc.code

    async with endpoint.serve() as server:
        ws = await connect(f"{url_of(server)}/tts")
        await asyncio.sleep(0.1)
        await ws.close(1009, "message too big")
        await asyncio.sleep(0.3)
    assert outcome == {"code": 1009, "wait": 1009, "send": 1009}


async def test_signed_dials_are_checked() -> None:
    secret = "signing-secret"
    async with egress_endpoint(signing_secret=secret, stop_after=1) as (url, seen):
        endpoint_url = f"{url}/stt?id=7"
        now = int(time.time())
        good = {
            "Sluice-Adapter-Id": "ad9",
            "Sluice-Timestamp": str(now),
            "Sluice-Signature": sign_dial(secret, now, "ad9", endpoint_url),
        }
        for bad in (
            {},
            {**good, "Sluice-Signature": sign_dial("wrong", now, "ad9", endpoint_url)},
            {**good, "Sluice-Timestamp": str(now - 400),
             "Sluice-Signature": sign_dial(secret, now - 400, "ad9", endpoint_url)},
        ):  # fmt: skip
            with pytest.raises(InvalidStatus) as refused:
                await connect(endpoint_url, additional_headers=bad)
            assert refused.value.response.status_code == 401
        with pytest.raises(InvalidStatus) as unknown:
            await connect(f"{url}/elsewhere", additional_headers=good)
        assert unknown.value.response.status_code == 404
        async with connect(endpoint_url, additional_headers=good) as ws:
            await ws.send(pcm(0))
            await asyncio.wait_for(seen.done.wait(), 5)
    assert seen.streams[0].adapter_id == "ad9"


async def test_the_asgi_app_serves_the_same_endpoint() -> None:
    import uvicorn

    endpoint = Endpoint(token="t0k")
    got: list[StreamItem] = []
    done = asyncio.Event()

    @endpoint.egress("/stt")
    async def handler(stream: EgressStream) -> None:
        got.extend([item async for item in stream])
        done.set()

    config = uvicorn.Config(endpoint.asgi(), host="127.0.0.1", port=0, log_level="warning",
                            lifespan="on", ws="websockets-sansio")  # fmt: skip
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 (uvicorn offers no event for this)
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        for path, status in (("/stt?token=wrong", 401), ("/nowhere?token=t0k", 404)):
            with pytest.raises(InvalidStatus) as refused:
                await connect(f"ws://127.0.0.1:{port}{path}")
            assert refused.value.response.status_code == status
        async with connect(f"ws://127.0.0.1:{port}/stt?token=t0k") as ws:
            for n in range(3):
                await ws.send(pcm(n))
        await asyncio.wait_for(done.wait(), 5)
    finally:
        server.should_exit = True
        await serving
    assert [i.sequence_number for i in got if isinstance(i, AudioFrame)] == [0, 1, 2]
