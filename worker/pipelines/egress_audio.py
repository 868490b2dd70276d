"""Egress audio (`outputCodec: "pcm"` or `"mulaw"`): decoded Opus frames, sent at once.

Opus is decoded with libopus right in the event loop (~40 µs a frame): a thread hop
would cost more than the work, and latency is what this path is judged by. The wire's
default format (48 kHz stereo s16le, 20 ms) sends one Packet per decoded frame as it
is; any other format (E1) goes through `AudioConverter` first.
"""

from __future__ import annotations

from typing import Any

from sluice.media.types import EncodedFrame
from sluice.state.records import AdapterRecord
from worker.pipelines.base import PipelineContext
from worker.pipelines.egress import EgressPipeline, reconnect_window_s
from worker.pipelines.opus_pcm import OpusPcmDecoder
from worker.protocol.audio_format import AudioConverter, AudioFormat
from worker.protocol.reconnect import Backlog
from worker.protocol.stamping import AUDIO_CLOCK_RATE


class AudioEgressPipeline(EgressPipeline):
    kind = "audio"
    clock_rate = AUDIO_CLOCK_RATE
    packet_interval_ms = 20.0

    @classmethod
    def timing(cls, record: AdapterRecord) -> tuple[int, float]:
        fmt = AudioFormat.from_options(record.codec, record.options)
        return fmt.sample_rate, float(fmt.frame_ms)

    def __init__(self, ctx: PipelineContext) -> None:
        self.format = AudioFormat.from_options(ctx.record.codec, ctx.record.options)
        # At least as long as the reconnect window, so a reconnect inside it loses nothing.
        backlog_s = max(ctx.settings.egress_backlog_s, reconnect_window_s(ctx))
        super().__init__(ctx, Backlog.for_audio(backlog_s, self.format.frame_ms))
        self.decoder = OpusPcmDecoder()
        self.converter = None if self.format.is_wire_default else AudioConverter(self.format)

    def stream_format(self) -> dict[str, Any]:
        return self.format.describe()

    def _on_frame(self, frame: EncodedFrame) -> None:
        for pcm in self.decoder.decode(frame.data):
            if self.converter is not None:
                self._emit_converted(pcm, frame.timestamp)
                continue
            sequence, timestamp = self.stamper.stamp(frame.timestamp)
            self._emit(sequence, timestamp, pcm)

    def _emit_converted(self, pcm: bytes, rtp_timestamp: int) -> None:
        assert self.converter is not None
        for position, payload in self.converter.feed(pcm, rtp_timestamp):
            # The converter counts in output samples from 0; the stamper numbers the
            # Packets and starts a resumed stream where the lost one would be.
            sequence, timestamp = self.stamper.stamp(position)
            self._emit(sequence, timestamp, payload)
