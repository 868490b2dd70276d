"""What streams through the chaos deployment: publishers, adapters, and their endpoints.

Every adapter gets a path of its own on one WebSocket server in the runner, which logs
per connection what arrived (sequence number, timestamp, arrival time: never payloads,
which would fill memory in a long run) or, for an ingest adapter, plays a tone into it.
Publishers send pre-encoded media (an Opus tone, a VP8 picture with a keyframe every
second), so the runner's CPU goes to watching, not encoding.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from sluice.config import Settings
from sluice.media.calls_client import Peer, SessionsClient
from sluice.media.ice import rtc_configuration
from sluice.wire.packet import decode, encode
from tests.integration.audio import tone_pcm
from tests.integration.helpers import APP, SECRET
from tests.sfu.media import PacketLoopTrack, encode_opus_tone, encode_vp8_colour

AUDIO_CHUNK_S = 0.1  # ingest endpoints send 100 ms per Packet, paced in real time
TONE = tone_pcm(440, 660, 1.0)  # a whole number of periods of both: loops seamlessly
_TWICE = TONE + TONE  # any chunk of the loop is a slice of this


@dataclass
class Connection:
    """One WebSocket connection from Sluice to an endpoint."""

    opened_at: float
    packets: list[tuple[int, int, float]] = field(default_factory=list)  # seq, ts, arrival
    texts: int = 0
    bad_jpegs: int = 0
    closed_at: float | None = None
    close_code: int | None = None


@dataclass
class Stream:
    """One adapter of the fleet and what its endpoint saw."""

    name: str
    kind: str  # "pcm", "jpeg" (egress) or "ingest"
    source: str = ""  # the publisher's session (egress)
    adapter_id: str = ""
    session_id: str = ""
    create_status: int = 0
    create_error: str = ""  # the create's errorCode, if it failed
    connections: list[Connection] = field(default_factory=list)

    @property
    def egress(self) -> bool:
        return self.kind != "ingest"

    def sequence_numbers(self) -> list[int]:
        return [seq for conn in self.connections for seq, _, _ in conn.packets]

    def repeats(self) -> int:
        """Sequence numbers that did not increase, across all connections."""
        numbers = self.sequence_numbers()
        return sum(1 for a, b in itertools.pairwise(numbers) if b <= a)

    def arrivals(self, since: float = 0.0, until: float = float("inf")) -> list[float]:
        return [t for conn in self.connections for _, _, t in conn.packets if since <= t < until]

    def connected_after(self, moment: float) -> list[Connection]:
        return [conn for conn in self.connections if conn.opened_at >= moment]

    def last_packet_at(self) -> float:
        times = self.arrivals()
        return times[-1] if times else 0.0


class Endpoints:
    """One WebSocket server: `/<stream name>` records or speaks, per the stream's kind."""

    def __init__(self) -> None:
        self.streams: dict[str, Stream] = {}
        self.hold_s: dict[str, float] = {}  # a prefix → close each connection after this
        self.server: Server | None = None

    @property
    def port(self) -> int:
        assert self.server is not None
        return int(self.server.sockets[0].getsockname()[1])

    def url(self, name: str) -> str:
        return f"ws://127.0.0.1:{self.port}/{name}"

    async def __aenter__(self) -> Endpoints:
        self.server = await serve(self._handle, "127.0.0.1", 0, max_size=2**21)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    async def _handle(self, ws: ServerConnection) -> None:
        name = (ws.request.path if ws.request else "/").lstrip("/")
        for prefix, hold in self.hold_s.items():
            if name.startswith(prefix):
                await _hold_then_close(ws, hold)
                return
        stream = self.streams.get(name)
        if stream is None:
            await ws.close(1008, "unknown stream")
            return
        conn = Connection(time.monotonic())
        stream.connections.append(conn)
        try:
            if stream.egress:
                await _record(ws, conn, jpeg=stream.kind == "jpeg")
            else:
                await _speak(ws)
        except ConnectionClosed:
            pass
        finally:
            conn.closed_at = time.monotonic()
            conn.close_code = ws.close_code


async def _record(ws: ServerConnection, conn: Connection, *, jpeg: bool) -> None:
    async for message in ws:
        now = time.monotonic()
        if isinstance(message, str):
            conn.texts += 1
            continue
        packet = decode(message)
        if jpeg and not (packet.payload[:2] == b"\xff\xd8" and packet.payload[-2:] == b"\xff\xd9"):
            conn.bad_jpegs += 1
        conn.packets.append((packet.sequence_number, packet.timestamp, now))


async def _speak(ws: ServerConnection) -> None:
    """A 440/660 Hz tone, 100 ms per Packet in real time, until the connection ends."""
    chunk = int(48_000 * AUDIO_CHUNK_S) * 4
    started = time.monotonic()
    for n in itertools.count():
        offset = (n * chunk) % len(TONE)
        await ws.send(encode(0, 0, _TWICE[offset : offset + chunk]))
        await asyncio.sleep(max(0.0, started + (n + 1) * AUDIO_CHUNK_S - time.monotonic()))


async def _hold_then_close(ws: ServerConnection, hold_s: float) -> None:
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        async with asyncio.timeout(hold_s):
            async for _ in ws:
                pass
    with contextlib.suppress(ConnectionClosed, TimeoutError):
        await ws.close(1000)


def sessions_client(node_url: str) -> SessionsClient:
    settings = Settings(apps=f"{APP}:{SECRET}", ice_loopback=True)
    return SessionsClient(
        f"{node_url}/v1/apps/{APP}", SECRET, configuration=rtc_configuration(settings)
    )


@dataclass
class Publisher:
    """A session publishing `mic` (Opus tone) and `cam` (VP8), on one SFU node."""

    node_url: str
    client: SessionsClient
    peer: Peer

    @property
    def session_id(self) -> str:
        return self.peer.session_id

    @classmethod
    async def start(cls, node_url: str, audio: list[bytes], video: list[bytes]) -> Publisher:
        client = sessions_client(node_url)
        peer = await client.new_peer()
        tracks = [
            PacketLoopTrack("audio", audio, 960, 48_000),
            PacketLoopTrack("video", video, 3_000, 90_000),
        ]
        await peer.publish(tracks, ["mic", "cam"])
        return cls(node_url, client, peer)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.client.close()


def media() -> tuple[list[bytes], list[bytes]]:
    """Pre-encoded sources: 10 s of Opus tone, 4 s of VP8 with a keyframe every 30 frames."""
    return encode_opus_tone(440.0, 500), encode_vp8_colour((40, 160, 220), 120, gop=30)


def egress_item(endpoint: str, stream: Stream) -> dict[str, Any]:
    return {
        "location": "remote",
        "sessionId": stream.source,
        "trackName": "cam" if stream.kind == "jpeg" else "mic",
        "endpoint": endpoint,
        "outputCodec": stream.kind,
    }


def ingest_item(endpoint: str, stream: Stream) -> dict[str, Any]:
    return {
        "location": "local",
        "trackName": stream.name,
        "endpoint": endpoint,
        "inputCodec": "pcm",
    }


async def create(api: Any, endpoints: Endpoints, stream: Stream) -> Stream:
    """Creates `stream`'s adapter through the API; fills in its id and session."""
    endpoints.streams[stream.name] = stream
    url = endpoints.url(stream.name)
    item = egress_item(url, stream) if stream.egress else ingest_item(url, stream)
    try:
        resp = await api.post("/adapters/websocket/new", json={"tracks": [item]})
    except httpx.TransportError as exc:  # the caller decides whether to try again
        stream.create_status, stream.create_error = 0, type(exc).__name__
        return stream
    stream.create_status = resp.status_code
    body = (
        resp.json() if resp.headers.get("content-type", "").startswith("application/json") else {}
    )
    result = (body.get("tracks") or [{}])[0]
    stream.adapter_id = result.get("adapterId", "")
    stream.create_error = str(result.get("errorCode") or body.get("errorCode") or "")
    stream.session_id = result.get("sessionId", stream.source)
    return stream


_KINDS = ("pcm", "ingest", "jpeg", "pcm", "ingest")


def plan(count: int, sources: list[str], start: int = 0) -> list[Stream]:
    """`count` streams: 2 of every 5 egress PCM, 1 JPEG, 2 ingest, sources in turn.

    The kind follows the stream's number from `start`, so refills keep the mix."""
    turn = itertools.cycle(sources)
    streams = []
    for i in range(start, start + count):
        kind = _KINDS[i % len(_KINDS)]
        streams.append(Stream(f"{kind}-{i}", kind, "" if kind == "ingest" else next(turn)))
    return streams


def by_kind(streams: Iterable[Stream], *kinds: str) -> list[Stream]:
    return [s for s in streams if s.kind in kinds]
