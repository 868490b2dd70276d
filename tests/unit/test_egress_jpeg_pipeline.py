"""The JPEG egress pipeline in one process: a fake SFU pull, a real endpoint on port 0.

The pipeline is driven through its own interface (`prepare`, the frame sink the SFU
client is handed, `run`, `aclose`); only the sessions API client is replaced, so no
SFU, Redis or worker process is needed. What is checked is what the endpoint hears and
what the adapter's log says when the decoder or the encoder breaks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from dataclasses import dataclass, field
from fractions import Fraction
from types import SimpleNamespace
from typing import Any

import av
import numpy as np
import pytest
import structlog
from aiortc.mediastreams import MediaStreamError
from structlog.testing import capture_logs
from websockets.asyncio.client import ClientConnection, connect
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from sluice.config import Settings
from sluice.media.types import Codec, EncodedFrame, FrameSink
from sluice.state.records import AdapterRecord, AdapterState, CloseReason, Direction
from sluice.wire.packet import decode
from worker.pipelines import egress
from worker.pipelines.base import PipelineContext
from worker.pipelines.egress_jpeg import JpegEgressPipeline
from worker.pipelines.snapshots import Picture, SnapshotDecoder

pytestmark = pytest.mark.timeout(30)

VP8 = Codec("VP8", "video/VP8", 90_000, 96)
AV1 = Codec("AV1", "video/AV1", 90_000, 98)  # negotiable in SDP, but no decoder here
RUN_TIMEOUT_S = 10.0


class FakeRemoteTrack:
    """The pulled track: it only reports its end, as a tapped receiver does."""

    def __init__(self) -> None:
        self.ended = asyncio.Event()

    async def recv(self) -> Any:
        await self.ended.wait()
        raise MediaStreamError


class FakeTap:
    def __init__(self) -> None:
        self.requests = 0

    def request_keyframe(self) -> None:
        self.requests += 1


class FakePeer:
    pc = SimpleNamespace(connectionState="connected")

    def __init__(self) -> None:
        self.taps = [FakeTap()]

    async def state(self) -> dict[str, Any]:
        return {}


class FakeSessions:
    """Stands in for `SessionsClient`: `pull` hands back the frame sink and the track."""

    def __init__(self) -> None:
        self.on_frame: FrameSink | None = None
        self.track = FakeRemoteTrack()
        self.peers = [FakePeer()]
        self.closed = False

    async def pull(
        self, session_id: str, track_name: str, *, kind: str, on_frame: FrameSink
    ) -> Any:
        self.on_frame = on_frame
        return self.track

    async def close(self) -> None:
        self.closed = True


@dataclass
class Endpoint:
    url: str
    messages: list[bytes | str] = field(default_factory=list)
    got_message: asyncio.Event = field(default_factory=asyncio.Event)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    close_code: int | None = None
    close_reason: str | None = None


@pytest.fixture
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint(url="")

    async def handler(ws: ServerConnection) -> None:
        try:
            async for message in ws:
                ep.messages.append(message)
                ep.got_message.set()
        except ConnectionClosed:
            pass
        ep.close_code, ep.close_reason = ws.close_code, ws.close_reason
        ep.closed.set()

    async with serve(handler, "127.0.0.1", 0) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        ep.url = f"ws://127.0.0.1:{port}/"
        yield ep


@pytest.fixture
def sessions(monkeypatch: pytest.MonkeyPatch) -> FakeSessions:
    fake = FakeSessions()
    monkeypatch.setattr(egress, "sessions_client", lambda ctx, target=None: fake)
    return fake


async def start(endpoint: Endpoint) -> tuple[JpegEgressPipeline, ClientConnection]:
    """A prepared pipeline and its open connection, logging with the adapter's context.

    Call inside `capture_logs()`: the logger is bound to whatever is configured now.
    """
    record = AdapterRecord(
        adapter_id="a1",
        app_id="app1",
        direction=Direction.EGRESS,
        session_id="s1",
        track_name="cam",
        endpoint=endpoint.url,
        codec="jpeg",
    )
    states: list[AdapterState] = []

    async def set_state(state: AdapterState) -> None:
        states.append(state)

    async def redial() -> ClientConnection:
        raise AssertionError("no re-dial expected")

    ctx = PipelineContext(
        record=record,
        settings=Settings(apps="app1:secret1"),
        log=structlog.get_logger().bind(adapter_id="a1"),
        redial=redial,
        set_state=set_state,
    )
    pipeline = JpegEgressPipeline(ctx)
    await pipeline.prepare()
    return pipeline, await connect(endpoint.url)


def vp8_keyframe(width: int = 64, height: int = 48) -> bytes:
    """One real VP8 keyframe of a grey picture."""
    encoder = av.CodecContext.create("libvpx", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuv420p"
    encoder.time_base = Fraction(1, 30)
    encoder.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    image = np.full((height, width, 3), 128, dtype=np.uint8)
    frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
    frame.pts = 0
    packets = [*encoder.encode(frame), *encoder.encode(None)]
    return b"".join(bytes(packet) for packet in packets)


def feed(sessions: FakeSessions, codec: Codec, data: bytes) -> None:
    assert sessions.on_frame is not None
    sessions.on_frame(EncodedFrame(data, 3000, codec, keyframe=True, received_at=0.0))


def failures(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "media_task_failed"]


async def test_a_picture_becomes_a_jpeg_packet_and_the_track_end_closes(
    endpoint: Endpoint, sessions: FakeSessions
) -> None:
    # The harness itself: the healthy path sends a JPEG, then ends as the track does.
    with capture_logs():
        pipeline, ws = await start(endpoint)
        feed(sessions, VP8, vp8_keyframe())
        run = asyncio.create_task(pipeline.run(ws))
        await asyncio.wait_for(endpoint.got_message.wait(), RUN_TIMEOUT_S)
        sessions.track.ended.set()
        reason = await asyncio.wait_for(run, RUN_TIMEOUT_S)
        await pipeline.aclose()
    assert reason is CloseReason.TRACK_ENDED
    await asyncio.wait_for(endpoint.closed.wait(), RUN_TIMEOUT_S)
    assert (endpoint.close_code, endpoint.close_reason) == (1000, "track ended")
    packet = decode(endpoint.messages[0])  # type: ignore[arg-type]
    assert packet.payload[:2] == b"\xff\xd8"  # a JPEG
    assert sessions.closed


async def test_a_decoder_that_raises_is_logged_and_ends_the_adapter(
    endpoint: Endpoint, sessions: FakeSessions
) -> None:
    with capture_logs() as logs:
        pipeline, ws = await start(endpoint)
        # `decode` raises for a codec it has no decoder for: no picture can ever come.
        feed(sessions, AV1, b"\x12\x00")
        reason = await asyncio.wait_for(pipeline.run(ws), RUN_TIMEOUT_S)
        await pipeline.aclose()
    assert reason is CloseReason.INTERNAL_ERROR
    (failure,) = failures(logs)
    assert failure["adapter_id"] == "a1"
    assert failure["log_level"] == "error"
    assert "no decoder for AV1" in failure["error"]
    assert isinstance(failure["exc_info"], ValueError)
    await asyncio.wait_for(endpoint.closed.wait(), RUN_TIMEOUT_S)
    assert endpoint.close_code == 1000
    assert endpoint.messages == []


async def test_an_encoder_that_raises_is_logged_and_ends_the_adapter(
    endpoint: Endpoint, sessions: FakeSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: SnapshotDecoder, picture: Picture) -> bytes:
        raise RuntimeError("encoder exploded")

    monkeypatch.setattr(SnapshotDecoder, "encode_jpeg", broken)
    with capture_logs() as logs:
        pipeline, ws = await start(endpoint)
        feed(sessions, VP8, vp8_keyframe())
        reason = await asyncio.wait_for(pipeline.run(ws), RUN_TIMEOUT_S)
        await pipeline.aclose()
    assert reason is CloseReason.INTERNAL_ERROR
    (failure,) = failures(logs)
    assert failure["adapter_id"] == "a1"
    assert "encoder exploded" in failure["error"]
    await asyncio.wait_for(endpoint.closed.wait(), RUN_TIMEOUT_S)
    assert endpoint.close_code == 1000
    assert endpoint.messages == []


async def test_a_picture_mjpeg_refuses_is_skipped_and_logged_the_next_one_is_sent(
    endpoint: Endpoint, sessions: FakeSessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The one encode failure a hostile stream may cause: the adapter stays up.
    real = SnapshotDecoder.encode_jpeg
    refused = asyncio.Event()
    loop = asyncio.get_running_loop()

    def refuses_once(self: SnapshotDecoder, picture: Picture) -> bytes:
        if not refused.is_set():
            loop.call_soon_threadsafe(refused.set)  # this runs on the decoder thread
            raise av.error.InvalidDataError(1094995529, "refused")
        return real(self, picture)

    monkeypatch.setattr(SnapshotDecoder, "encode_jpeg", refuses_once)
    with capture_logs() as logs:
        pipeline, ws = await start(endpoint)
        feed(sessions, VP8, vp8_keyframe())
        run = asyncio.create_task(pipeline.run(ws))
        await asyncio.wait_for(refused.wait(), RUN_TIMEOUT_S)
        feed(sessions, VP8, vp8_keyframe())  # a new picture for the next tick
        await asyncio.wait_for(endpoint.got_message.wait(), RUN_TIMEOUT_S)
        run.cancel()
        with pytest.raises(asyncio.CancelledError):
            await run
        await pipeline.aclose()
    assert [entry["event"] for entry in logs if entry["log_level"] != "debug"].count(
        "jpeg_encode_failed"
    ) == 1
    assert failures(logs) == []
    assert pipeline.ctx.counters["skipped"] == 1
    assert len(endpoint.messages) == 1
