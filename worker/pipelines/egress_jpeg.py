"""Egress video (`outputCodec: "jpeg"`): the latest picture as a JPEG, `fps` times a second.

Every frame is decoded (on a worker thread, see `snapshots`); a drift-free pacer (1 s by
default, E5 `fps`) encodes the newest picture, the first one as soon as a picture
exists, scaled down to `maxWidth`/`maxHeight` at `quality`. After a frame was lost or
failed to decode, nothing is decoded until a keyframe, which is asked for at once and
again until it comes (a tick with no new picture sends nothing): a snapshot never shows
a picture decoded from a damaged reference. While the endpoint is away only the latest
JPEG is kept, and it is sent first on reconnect.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import av

from sluice.media.types import EncodedFrame
from sluice.state.records import AdapterRecord
from worker.pipelines.base import PipelineContext
from worker.pipelines.egress import EgressPipeline
from worker.pipelines.snapshots import Picture, SnapshotDecoder
from worker.protocol.pacing import Pacer
from worker.protocol.reconnect import LatestOnly
from worker.protocol.stamping import VIDEO_CLOCK_RATE

SNAPSHOT_INTERVAL_S = 1.0  # by default (E5 `fps`: 1)
# Frames waiting for the decoder thread; past this it is over a second behind, and
# frames are dropped until the next keyframe rather than queueing without bound.
MAX_PENDING_FRAMES = 45


class JpegEgressPipeline(EgressPipeline):
    kind = "video"
    clock_rate = VIDEO_CLOCK_RATE
    packet_interval_ms = SNAPSHOT_INTERVAL_S * 1000 / 2  # a late tick is caught up

    @classmethod
    def timing(cls, record: AdapterRecord) -> tuple[int, float]:
        return cls.clock_rate, snapshot_interval_s(record) * 1000 / 2

    def __init__(self, ctx: PipelineContext) -> None:
        self.interval_s = snapshot_interval_s(ctx.record)
        super().__init__(ctx, LatestOnly())
        options = ctx.record.options
        self.decoder = SnapshotDecoder(
            int(options.get("quality", ctx.settings.jpeg_quality)),
            options.get("maxWidth"),
            options.get("maxHeight"),
        )
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self._loop = asyncio.get_running_loop()  # pipelines are made in the loop that runs them
        # Frames handed to the decoder thread, and those it has done with: each counter is
        # written by one thread only, so their difference needs no lock.
        self._submitted = 0
        self._finished = 0
        self._skipping = False  # dropping frames until a keyframe after falling behind
        self._first_picture = asyncio.Event()
        self._had_picture = False  # the decoder thread's own view of `_first_picture`
        self._decoder_broken = asyncio.Event()
        self._decode_error: BaseException | None = None  # the first decode that raised

    def stream_format(self) -> dict[str, Any]:
        return {"codec": "jpeg", "fps": 1 / self.interval_s}

    def timestamp_step(self) -> int:
        return round(self.clock_rate * self.interval_s)

    def _on_frame(self, frame: EncodedFrame) -> None:
        if frame.after_gap and not frame.keyframe:
            self._request_keyframe()  # the tap asked already; a retry merges with it
        if self._skipping and not frame.keyframe:
            return
        if self._submitted - self._finished >= MAX_PENDING_FRAMES:
            self._skipping = True
            self.ctx.counters["skipped"] += 1
            self._request_keyframe()  # decoding resumes at one
            return
        self._skipping = False
        self._submitted += 1
        # A bare `submit`, not `run_in_executor`: an asyncio future per frame, and the
        # loop woken for each one's result, cost more than the hand-over itself; the
        # decoder thread calls into the loop only when there is something to do.
        self._thread.submit(self._decode, frame)

    def _request_keyframe(self) -> None:
        """Asks the publisher for a keyframe now, and again until one comes."""
        if self._client is not None:
            for peer in self._client.peers:
                for tap in peer.taps:
                    tap.request_keyframe()

    def _decode(self, frame: EncodedFrame) -> None:
        """Decodes one frame (decoder thread); tells the loop what it must act on."""
        try:
            pictured = self.decoder.decode(
                frame.codec.name,
                frame.data,
                frame.timestamp,
                keyframe=frame.keyframe,
                after_gap=frame.after_gap,
            )
        except Exception as exc:
            # `decode` answers False for any frame FFmpeg rejects (fuzzed in
            # test_jpeg_fuzz): what it raises is a decoder that cannot work (a codec
            # with no decoder, a broken FFmpeg), and every later frame would fail the
            # same way, so no picture could ever be sent. The first failure ends the
            # media, and so the adapter, with `internal_error`.
            self._to_loop(self._decoder_failed, exc)
            return
        finally:
            self._finished += 1
        if self.decoder.needs_keyframe:
            self._to_loop(self._request_keyframe)
        if pictured and not self._had_picture:
            self._had_picture = True
            self._to_loop(self._first_picture.set)

    def _to_loop(self, callback: Callable[..., object], *args: object) -> None:
        """Runs `callback` in the event loop (from the decoder thread)."""
        with contextlib.suppress(RuntimeError):  # the loop closed while a frame decoded
            self._loop.call_soon_threadsafe(callback, *args)

    def _decoder_failed(self, exc: BaseException) -> None:
        if self._decode_error is None:
            self._decode_error = exc
            self._decoder_broken.set()

    def _media_tasks(self) -> list[Coroutine[Any, Any, None]]:
        return [self._snapshots(), self._until_decoder_breaks()]

    async def _until_decoder_breaks(self) -> None:
        """Raises what the decoder thread raised, once it did."""
        await self._decoder_broken.wait()
        assert self._decode_error is not None
        raise self._decode_error

    async def _snapshots(self) -> None:
        loop = asyncio.get_running_loop()
        await self._first_picture.wait()
        pacer = Pacer(loop.time(), interval_s=self.interval_s)
        last: Picture | None = None
        while True:
            picture = self.decoder.latest
            if picture is not None and picture is not last:
                last = picture
                try:
                    jpeg = await loop.run_in_executor(
                        self._thread, self.decoder.encode_jpeg, picture
                    )
                except av.error.FFmpegError as exc:
                    # A picture MJPEG cannot take (from a hostile stream): skip it, the
                    # next one may do.
                    self.ctx.counters["skipped"] += 1
                    self.ctx.log.warning("jpeg_encode_failed", error=str(exc))
                else:
                    sequence, timestamp = self.stamper.stamp(picture.rtp_timestamp)
                    self._emit(sequence, timestamp, jpeg)
            await asyncio.sleep(pacer.next_delay(loop.time()))
            pacer.advance(loop.time())

    async def aclose(self) -> None:
        await super().aclose()
        self._thread.shutdown(wait=False, cancel_futures=True)


def snapshot_interval_s(record: AdapterRecord) -> float:
    """Seconds between two JPEGs: 1 / the adapter's `fps` (E5)."""
    return 1 / float(record.options.get("fps", 1 / SNAPSHOT_INTERVAL_S))
