"""A stand-in for a speech-to-text vendor's streaming socket: raw audio in, nothing out.

Shaped like the streaming sockets such services offer. The URL's query names the audio
format (`encoding=linear16|mulaw`, `sample_rate`, `channels`) and a handshake that names
another is refused (HTTP 400). Every binary message must be exactly one `frame_ms` frame
of that audio, nothing else: a protobuf `Packet` carrying such a frame is at least 3
bytes longer, so Packet framing is refused, as is any other length (close 1007) and any
text (close 1003: this service takes audio only). Like a vendor's, it talks first (a
metadata message) and the sender has to ignore it.

It transcribes nothing: it keeps the audio and when each frame arrived, for the test to
measure (level, frequency, cadence).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

import numpy as np
import numpy.typing as npt
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sluice_endpoint.formats import mulaw_to_pcm16

PATH = "/v1/listen"
CLOSE_UNSUPPORTED_DATA = 1003  # text: audio only
CLOSE_INVALID_PAYLOAD = 1007  # a binary message that is not one frame of the format
BYTES_PER_SAMPLE = {"linear16": 2, "mulaw": 1}


@dataclass
class VendorStt:
    """One listening socket that takes `encoding` at `sample_rate`, mono, in `frame_ms`."""

    encoding: str = "linear16"
    sample_rate: int = 16_000
    frame_ms: int = 20
    audio: bytearray = field(default_factory=bytearray)
    arrivals: list[float] = field(default_factory=list)  # loop time of each frame
    refusals: list[tuple[int, str]] = field(default_factory=list)  # close code, why
    handshakes_refused: list[str] = field(default_factory=list)
    close_codes: list[int | None] = field(default_factory=list)  # per connection, in order
    connections: int = 0
    closed: asyncio.Event = field(default_factory=asyncio.Event)  # a connection ended
    server: Server | None = None

    @property
    def frame_bytes(self) -> int:
        return self.sample_rate * self.frame_ms // 1000 * BYTES_PER_SAMPLE[self.encoding]

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        query = f"encoding={self.encoding}&sample_rate={self.sample_rate}&channels=1"
        return f"ws://127.0.0.1:{port}{PATH}?{query}"

    def mono(self) -> npt.NDArray[np.float64]:
        """Everything received, as linear samples."""
        data = bytes(self.audio)
        if self.encoding == "mulaw":
            data = mulaw_to_pcm16(data)
        return np.frombuffer(data, dtype="<i2").astype(np.float64)

    def frames_per_s(self, skip: int = 25) -> float:
        """Frames per second of wall time, after the first `skip` (a connect may flush
        what waited for it in a burst)."""
        times = self.arrivals[skip:]
        if len(times) < 2:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def median_interval_ms(self, skip: int = 25) -> float:
        times = self.arrivals[skip:]
        return float(np.median(np.diff(times)) * 1000) if len(times) > 1 else 0.0

    def _check_handshake(self, ws: ServerConnection, request: Request) -> Response | None:
        url = urlsplit(request.path)
        query = {name: values[-1] for name, values in parse_qs(url.query).items()}
        wanted = {
            "encoding": self.encoding,
            "sample_rate": str(self.sample_rate),
            "channels": "1",
        }
        if url.path == PATH and query == wanted:
            return None
        self.handshakes_refused.append(request.path)
        return ws.respond(400, f"this socket takes {wanted}\n")

    async def _listen(self, ws: ServerConnection) -> None:
        self.connections += 1
        loop = asyncio.get_running_loop()
        try:
            await ws.send(json.dumps({"type": "Metadata", "request_id": str(self.connections)}))
            async for message in ws:
                if isinstance(message, str):
                    await self._refuse(ws, CLOSE_UNSUPPORTED_DATA, "text: audio only")
                    return
                if len(message) != self.frame_bytes:
                    why = f"{len(message)} bytes, not {self.frame_ms} ms of {self.encoding}"
                    await self._refuse(ws, CLOSE_INVALID_PAYLOAD, why)
                    return
                self.audio += message
                self.arrivals.append(loop.time())
        except ConnectionClosed:
            pass
        finally:
            self.close_codes.append(ws.close_code)
            self.closed.set()

    async def _refuse(self, ws: ServerConnection, code: int, why: str) -> None:
        self.refusals.append((code, why))
        await ws.close(code, why)


@contextlib.asynccontextmanager
async def vendor_stt(
    encoding: str = "linear16", sample_rate: int = 16_000
) -> AsyncIterator[VendorStt]:
    stt = VendorStt(encoding, sample_rate)
    async with serve(stt._listen, "127.0.0.1", 0, process_request=stt._check_handshake) as server:
        stt.server = server
        yield stt
