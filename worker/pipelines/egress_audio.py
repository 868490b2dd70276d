"""Egress audio (`outputCodec: "pcm"`): one Packet per decoded Opus frame, sent at once.

Packets are put in order by a small reorder window (`worker.protocol.reorder`), which
costs latency only while a packet is missing; holes of up to 100 ms are concealed (in-band
FEC or PLC) and counted, longer ones jump. Opus is decoded with libopus right in the event
loop (~40 µs a frame): a thread hop would cost more than the work, and latency is what
this path is judged by.
"""

from __future__ import annotations

import asyncio

from sluice.media.types import EncodedFrame
from sluice.wire.packet import encode
from worker.pipelines.base import PipelineContext
from worker.pipelines.egress import EgressPipeline
from worker.pipelines.opus_pcm import OpusPcmDecoder
from worker.protocol.reconnect import Backlog
from worker.protocol.reorder import AudioReorder, Conceal, Decode, Play
from worker.protocol.stamping import AUDIO_CLOCK_RATE


class AudioEgressPipeline(EgressPipeline):
    kind = "audio"
    clock_rate = AUDIO_CLOCK_RATE
    packet_interval_ms = 20.0

    def __init__(self, ctx: PipelineContext) -> None:
        # As long as the reconnect window by default, so a reconnect inside it loses nothing.
        super().__init__(ctx, Backlog.for_audio(ctx.settings.egress_backlog_s))
        self.decoder = OpusPcmDecoder()
        self.reorder = AudioReorder()
        self._expiry: asyncio.TimerHandle | None = None
        self._lost_counted = 0

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
                sequence, timestamp = self.stamper.stamp(item.timestamp)
                self._emit(encode(sequence, timestamp, pcm))
        lost = self.reorder.counts.lost
        counters["lost"] += lost - self._lost_counted
        self._lost_counted = lost

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
