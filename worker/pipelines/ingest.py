"""Ingest (WebSocket → WebRTC): the endpoint pushes Packets of PCM.

This stage holds the connection and counts what arrives; PCM → Opus playout plugs in
behind the same `run`.
"""

from __future__ import annotations

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from sluice.state import CloseReason
from worker.pipelines.base import Pipeline, close_ws

MAX_MESSAGE_BYTES = 32_768  # spec §6: protobuf overhead included; one more byte is 1009


class IngestPipeline(Pipeline):
    max_message_bytes = MAX_MESSAGE_BYTES

    async def run(self, ws: ClientConnection) -> CloseReason:
        counters = self.ctx.counters
        try:
            async for message in ws:
                if isinstance(message, str):
                    counters["skipped"] += 1
                    continue
                counters["packets"] += 1
                counters["bytes"] += len(message)
        except ConnectionClosed as exc:
            if exc.sent is not None and exc.sent.code == 1009:
                self.ctx.log.info("ingest_message_too_big", limit=MAX_MESSAGE_BYTES)
                return CloseReason.MESSAGE_TOO_BIG
        finally:
            await close_ws(ws)
        return CloseReason.ENDPOINT_CLOSED
