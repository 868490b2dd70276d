"""Egress (WebRTC → WebSocket): Sluice sends Packets to the endpoint.

This stage holds the connection open and ignores what the endpoint sends back; pulling
and decoding the track plugs in behind the same `run`.
"""

from __future__ import annotations

from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from sluice.state import CloseReason
from worker.pipelines.base import Pipeline, close_ws


class EgressPipeline(Pipeline):
    async def run(self, ws: ClientConnection) -> CloseReason:
        try:
            async for _ in ws:
                pass  # messages from the endpoint are ignored (spec §7)
        except ConnectionClosed:
            pass
        finally:
            await close_ws(ws)
        return CloseReason.ENDPOINT_CLOSED
