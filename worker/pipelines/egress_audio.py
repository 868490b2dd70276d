"""Egress audio (`outputCodec: "pcm"`): one Packet per decoded Opus frame, sent at once.

Opus is decoded with libopus right in the event loop (~40 µs a frame): a thread hop
would cost more than the work, and latency is what this path is judged by.
"""

from __future__ import annotations

from sluice.media.types import EncodedFrame
from sluice.wire.packet import encode
from worker.pipelines.base import PipelineContext
from worker.pipelines.egress import EgressPipeline
from worker.pipelines.opus_pcm import OpusPcmDecoder
from worker.protocol.reconnect import Backlog
from worker.protocol.stamping import AUDIO_CLOCK_RATE


class AudioEgressPipeline(EgressPipeline):
    kind = "audio"
    clock_rate = AUDIO_CLOCK_RATE
    packet_interval_ms = 20.0

    def __init__(self, ctx: PipelineContext) -> None:
        # As long as the reconnect window by default, so a reconnect inside it loses nothing.
        super().__init__(ctx, Backlog.for_audio(ctx.settings.egress_backlog_s))
        self.decoder = OpusPcmDecoder()

    def _on_frame(self, frame: EncodedFrame) -> None:
        for pcm in self.decoder.decode(frame.data):
            sequence, timestamp = self.stamper.stamp(frame.timestamp)
            self._emit(encode(sequence, timestamp, pcm))
