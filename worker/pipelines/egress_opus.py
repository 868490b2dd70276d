"""Egress Opus (`outputCodec: "opus"`): the publisher's packets as they arrive, not decoded.

Each complete Opus frame off the receiver becomes one Packet, its payload the Opus packet
exactly as the publisher's encoder made it; `timestamp` is the RTP distance from the
first (48 kHz units). Nothing is decoded or encoded: the cheapest egress there is, for
endpoints that decode themselves (or store Opus as it is).
"""

from __future__ import annotations

from typing import Any

from sluice.media.types import EncodedFrame
from worker.pipelines.base import PipelineContext
from worker.pipelines.egress import EgressPipeline, reconnect_window_s
from worker.protocol.reconnect import Backlog
from worker.protocol.stamping import AUDIO_CLOCK_RATE

OPUS_CHANNELS = 2  # RFC 7587: Opus is always signalled as opus/48000/2
USUAL_FRAME = 960  # 20 ms, what browsers send; the `start` event's guess of the next step


class OpusEgressPipeline(EgressPipeline):
    kind = "audio"
    clock_rate = AUDIO_CLOCK_RATE
    # Opus frames may be as short as 10 ms in WebRTC: the backlog and a resume count
    # with that, so neither falls short with a publisher that sends them.
    packet_interval_ms = 10.0

    def __init__(self, ctx: PipelineContext) -> None:
        backlog_s = max(ctx.settings.egress_backlog_s, reconnect_window_s(ctx))
        super().__init__(ctx, Backlog.for_audio(backlog_s, self.packet_interval_ms))

    def stream_format(self) -> dict[str, Any]:
        return {"codec": "opus", "sampleRate": AUDIO_CLOCK_RATE, "channels": OPUS_CHANNELS}

    def timestamp_step(self) -> int:
        return USUAL_FRAME

    def _on_frame(self, frame: EncodedFrame) -> None:
        if not frame.data:
            return  # nothing to forward (an empty RTP payload)
        sequence, timestamp = self.stamper.stamp(frame.timestamp)
        self._emit(sequence, timestamp, frame.data)
