"""A rehearsal in the worker host: the media code every pipeline runs, run once before
forking, so forked pipelines find it warm and share it instead of copying it.

Each pipeline is a forked copy of the worker host, its pages shared until written. The
first run of code writes around it: on CPython 3.11 each call counts down its code
object's warm-up and then specializes its instructions in place, and first uses fill
caches and allocate into the parent's half-used memory pools. A pipeline's private
memory went from 6 MB when its job started to 17 MB once its SFU session was set up
(10 to 17 in `EgressPipeline.prepare`), and barely grew after. A bare forked child
that set up a loopback call and received Opus ended with 18 MB private after a cold
parent, 12 MB after a parent that had rehearsed it; in a worker host, 20.4 MB against
18.4 MB (`docs/performance.md`).

The rehearsal is one short egress stream in this process, through the code a pipeline
runs: `SessionsClient.pull` against a sessions API served here by a peer that sends
Opus, on 127.0.0.1 only (no STUN or TURN server is asked); the tapped, eagerly receiving
receiver; Opus decoded to PCM, framed as Packets and written to a WebSocket served here.
It takes ~0.2 s, leaves nothing behind (every peer, socket and thread closed) and never
stops the host: if it fails, the host starts cold and says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from typing import Any

import numpy as np
import structlog
from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from websockets.asyncio.client import connect
from websockets.asyncio.server import ServerConnection, serve

from sluice import event_loop
from sluice.config import Settings
from sluice.media.aiortc_internals import receive_eagerly
from sluice.media.calls_client import SessionsClient
from sluice.media.ice import rtc_configuration, set_loopback
from sluice.media.packet_track import PacketTrack, make_packet
from sluice.media.types import EncodedFrame
from sluice.wire.framing import Framing, frame
from worker.dial import tls_context
from worker.pipelines.opus_encode import OpusPcmEncoder
from worker.pipelines.opus_pcm import SAMPLE_RATE, OpusPcmDecoder
from worker.pipelines.playout_track import OPUS_BITRATE
from worker.protocol.pcm import FRAME_BYTES, FRAME_SAMPLES
from worker.ws_write import write_now

log = structlog.get_logger("sluice.worker")

FRAMES = 40  # 20 ms Opus packets: past CPython's warm-up of every per-packet function
TIMEOUT_S = 10.0  # the whole rehearsal
WAIT_S = 2.0  # for the frames, once sent


def rehearse(settings: Settings) -> None:
    """Runs the rehearsal on the pipelines' event loop; logs, never raises."""
    started = time.monotonic()
    try:
        frames = event_loop.run(_rehearse(settings), settings.event_loop)
    except Exception as exc:
        log.warning("rehearsal_failed", error=repr(exc), exc_info=exc)
        return
    finally:
        set_loopback(settings.ice_loopback)
    # Forking with threads running is unsafe; aiortc joins its own on close.
    if threading.active_count() > 1:
        log.warning("rehearsal_left_threads", threads=threading.active_count() - 1)
    log.info("rehearsal_done", frames=frames, ms=round((time.monotonic() - started) * 1000))


async def _rehearse(settings: Settings) -> int:
    rtc_configuration(settings)  # the pipelines' ICE agent (port range) ...
    set_loopback(True)  # ... on loopback only, and asking no STUN or TURN server
    source = _Source()
    received: list[bytes] = []
    enough = asyncio.Event()

    async def endpoint(ws: ServerConnection) -> None:
        async for message in ws:
            if isinstance(message, bytes):
                received.append(message)
                if len(received) >= FRAMES * 3 // 4:
                    enough.set()

    client: SessionsClient | None = None
    try:
        async with (
            asyncio.timeout(TIMEOUT_S),
            serve(endpoint, "127.0.0.1", 0) as ws_server,
            await asyncio.start_server(source.serve_http, "127.0.0.1", 0) as http_server,
        ):
            http_port = next(iter(http_server.sockets)).getsockname()[1]
            base = f"http://127.0.0.1:{http_port}/v1/apps/rehearsal"
            client = SessionsClient(base, "rehearsal", tls=tls_context())
            ws_port = next(iter(ws_server.sockets)).getsockname()[1]
            async with connect(f"ws://127.0.0.1:{ws_port}", compression=None) as ws:
                decoder = OpusPcmDecoder()

                def on_frame(encoded: EncodedFrame) -> None:
                    for pcm in decoder.decode(encoded.data):
                        message = frame(Framing.PACKET, 0, encoded.timestamp, pcm)
                        if not write_now(ws, message):
                            raise RuntimeError("the rehearsal's WebSocket took no write")

                # What an egress pipeline's `prepare` does, against the source below.
                await client.pull("source", "tone", kind="audio", on_frame=on_frame)
                for pts, payload in enumerate(_opus_tone(FRAMES)):
                    source.track.push(make_packet(payload, pts * FRAME_SAMPLES, SAMPLE_RATE))
                # Unpaced: the code is what is rehearsed, not the timing. Not all need come.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(enough.wait(), WAIT_S)
                count = len(received)
    finally:
        await asyncio.gather(source.pc.close(), *([client.close()] if client else []))
    return count


class _Source:
    """The far side of the rehearsal: a sessions API that answers one pull with a
    peer sending `track`, served over plain HTTP/1.1 (one request per connection)."""

    def __init__(self) -> None:
        self.pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
        self.track = PacketTrack("audio")

    async def serve_http(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                request = json.loads(await reader.readexactly(length)) if length else {}
                body = json.dumps(await self._answer(head.split(b" ")[1], request)).encode()
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(body), body)
                )
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass  # the client closed its connection
        finally:
            writer.close()

    async def _answer(self, path: bytes, request: dict[str, Any]) -> dict[str, Any]:
        if path.endswith(b"/sessions/new"):
            return {"sessionId": "rehearsal"}
        offer = request["sessionDescription"]
        self.pc.addTransceiver(self.track, direction="sendonly")
        await self.pc.setRemoteDescription(RTCSessionDescription(offer["sdp"], offer["type"]))
        await self.pc.setLocalDescription(await self.pc.createAnswer())
        receive_eagerly(self.pc)
        answer = {"type": "answer", "sdp": self.pc.localDescription.sdp}
        mid = self.pc.getTransceivers()[0].mid
        return {"sessionDescription": answer, "tracks": [{"mid": mid, "trackName": "tone"}]}


def _opus_tone(frames: int) -> list[bytes]:
    """`frames` 20 ms Opus packets of a 440 Hz tone, by the ingest pipeline's encoder."""
    encoder = OpusPcmEncoder(OPUS_BITRATE)
    t = np.arange(FRAME_SAMPLES * frames) / SAMPLE_RATE
    stereo = np.repeat((np.sin(2 * np.pi * 440 * t) * 8000).astype("<i2"), 2).tobytes()
    return [encoder.encode(stereo[i : i + FRAME_BYTES]) for i in range(0, len(stereo), FRAME_BYTES)]
