"""Egress audio (`outputCodec: "pcm"` or `"mulaw"`): decoded Opus frames, sent at once.

Packets are put in order by a small reorder window (`worker.protocol.reorder`), which
costs latency only while a packet is missing; holes of up to 100 ms are concealed (in-band
FEC or PLC) and counted, longer ones jump. Opus is decoded with libopus right in the event
loop (~40 µs a frame): a thread hop would cost more than the work, and latency is what
this path is judged by. libopus decodes to the adapter's channels (mixing a stereo
source), and to 24 kHz when the adapter wants 8 or 16 kHz (cheaper than 48 kHz stereo).
The wire's default format (48 kHz stereo s16le, 20 ms) sends one Packet per decoded frame
as it is; any other format goes through `AudioConverter` (soxr resampling, μ-law,
`frameMs` Packets, output-rate timestamps) first.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sluice.media.types import EncodedFrame
from sluice.state.records import AdapterRecord
from worker.pipelines.base import PipelineContext
from worker.pipelines.egress import EgressPipeline, reconnect_window_s
from worker.pipelines.opus_pcm import OpusPcmDecoder
from worker.protocol.audio_format import AudioConverter, AudioFormat, decode_rate
from worker.protocol.reconnect import Backlog
from worker.protocol.reorder import AudioReorder, Conceal, Decode, Play
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
        # Decoded to the adapter's channels (libopus mixes), at the rate its converter
        # resamples from (see `audio_format.decode_rate`).
        self.decoder = OpusPcmDecoder(decode_rate(self.format), self.format.channels)
        self.converter = None if self.format.is_wire_default else AudioConverter(self.format)
        self.reorder = AudioReorder()
        self._expiry: asyncio.TimerHandle | None = None
        self._lost_counted = 0

    def stream_format(self) -> dict[str, Any]:
        return self.format.describe()

    def _on_frame(self, frame: EncodedFrame) -> None:
        loop = asyncio.get_running_loop()
        if frame.sequence_number is None:  # not from an RTP receiver: nothing to order
            self._play([Decode(frame.timestamp, frame.data)])
            return
        now = loop.time()
        self._play(self.reorder.push(frame.sequence_number, frame.timestamp, frame.data, now))
        self._arm_expiry(loop)

    def _arm_expiry(self, loop: asyncio.AbstractEventLoop) -> None:
        """Wakes up when a packet has waited behind a hole for as long as it may."""
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        deadline = self.reorder.deadline()
        if deadline is not None:
            self._expiry = loop.call_at(deadline, self._expire)

    def _expire(self) -> None:
        loop = asyncio.get_running_loop()
        self._expiry = None
        self._play(self.reorder.expire(loop.time()))
        self._arm_expiry(loop)

    def _play(self, items: list[Play]) -> None:
        counters = self.ctx.counters  # carried on from the record when resumed: add to them
        for item in items:
            if isinstance(item, Conceal):
                chunks = [self.decoder.conceal(item.samples, item.fec)]
                counters["concealed"] += 1
            else:
                chunks = self.decoder.decode(item.data)
            for pcm in chunks:
                if self.converter is not None:
                    self._emit_converted(pcm, item.timestamp)
                    continue
                sequence, timestamp = self.stamper.stamp(item.timestamp)
                self._emit(sequence, timestamp, pcm)
        lost = self.reorder.counts.lost
        counters["lost"] += lost - self._lost_counted
        self._lost_counted = lost

    def _emit_converted(self, pcm: bytes, rtp_timestamp: int) -> None:
        assert self.converter is not None
        for position, payload in self.converter.feed(pcm, rtp_timestamp):
            # The converter counts in output samples from 0; the stamper numbers the
            # Packets and starts a resumed stream where the lost one would be.
            sequence, timestamp = self.stamper.stamp(position)
            self._emit(sequence, timestamp, payload)

    async def aclose(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        counts = self.reorder.counts
        self.ctx.log.info(
            "audio_repairs", reordered=counts.reordered, late=counts.late,
            duplicates=counts.duplicates, concealed=counts.concealed, fec=counts.fec,
            lost=counts.lost,
        )  # fmt: skip
        await super().aclose()
