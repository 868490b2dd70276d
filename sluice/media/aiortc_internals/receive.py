"""The receive tap: encoded frames off an `RTCRtpReceiver`, its statistics, a decoder.

Receive side: aiortc has no encoded-frame API. `RTCRtpReceiver._handle_rtp_packet` unwraps
RTX, keeps statistics, sends NACKs, depayloads into `packet._data`, then hands the packet
to its private `JitterBuffer.add()`, whose `(pli_flag, frame)` result decides whether a
PLI goes to the publisher and whether a frame reaches the decoder thread. `tap_receiver`
swaps that one object for a `_Tap` with the same `add()`: frames leave through a callback
as soon as they are complete (`sluice.media.frames.FrameAssembler`), nothing is ever
decoded, and a keyframe request rides out on the next `pli_flag` (and again, as
`sluice.media.keyframes` paces it, until a keyframe comes). Everything aiortc does around it
(RTCP reports, NACK, BYE handling, ending the track) keeps working.

Statistics: `receive_counts` reads a receiver's private per-SSRC statistics, the figures
its async `getStats()` reports, without awaiting (a metrics scrape is synchronous).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import aiortc.codecs
import av
import structlog
from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtpCodecParameters

from sluice.media import passthrough
from sluice.media.aiortc_internals.direct_receive import take_audio, take_video
from sluice.media.aiortc_internals.guard import CODECS_ATTR, JITTER_ATTR, STREAMS_ATTR, SeamBroken
from sluice.media.frames import FrameAssembler, PayloadFrameAssembler, is_keyframe, starts_frame
from sluice.media.keyframes import KeyframeRequests
from sluice.media.types import Codec, EncodedFrame, FrameSink
from sluice.state.records import MediaKind

log = structlog.get_logger("sluice.sfu")

DEFAULT_VIDEO_HOLD_FRAMES = 2  # ~66 ms at 30 fps for a NACK to fill a hole


class _Tap:
    """Stands in for the receiver's `JitterBuffer`; see the module docstring."""

    def __init__(self, receiver: Any, kind: str, sink: FrameSink, hold_frames: int) -> None:
        self._receiver = receiver
        self._sink = sink
        self._video = kind == MediaKind.VIDEO
        self._assembler = FrameAssembler(
            single_packet_frames=not self._video, hold_frames=hold_frames
        )
        self._codecs: dict[int, Codec] = {}
        self._by_payload: dict[str, PayloadFrameAssembler] = {}  # codec name → assembler
        self._requests = KeyframeRequests()  # one per stream, whoever wants a keyframe
        self._gap_unreported = False  # a gap came before an empty frame that was not delivered
        self.capacity = 512  # JitterBuffer's attribute, in case anything reads it

    def request_keyframe(self) -> None:
        self._requests.want()

    def add(self, packet: Any) -> tuple[bool, None]:
        codec = self._codecs.get(packet.payload_type) or self._learn(packet.payload_type)
        seq, ts, marker = packet.sequence_number, packet.timestamp, bool(packet.marker)
        now = time.monotonic()
        by_payload = self._by_payload.get(codec.name)
        if by_payload is not None:
            # VP9 and H265 frame edges and keyframes are in the raw payload, not `_data`.
            # Their assemblers return only a keyframe after a loss: no frame is broken.
            for done in by_payload.add(seq, ts, marker, packet.payload):
                self._deliver(codec, done.data, done.timestamp, done.keyframe, now, None, False)
            pli = by_payload.keyframe_due(now)
            return self._video and pli, None
        assembler = self._assembler
        starts = not assembler.synced and starts_frame(codec.name, packet.payload)
        for frame in assembler.add(seq, ts, marker, packet._data, starts):
            keyframe = is_keyframe(codec.name, frame.data) if self._video else True
            if self._video and keyframe:
                self._requests.got_keyframe()
            after_gap = frame.after_gap or self._gap_unreported
            delivered = self._deliver(
                codec, frame.data, frame.timestamp, keyframe, now, frame.first_seq, after_gap
            )
            # A gap before an empty frame (padding) belongs to the next one delivered.
            self._gap_unreported = after_gap and not delivered
        if assembler.lost:
            assembler.lost = False
            self._requests.want()
        return self._video and self._requests.due(now), None

    def _deliver(
        self,
        codec: Codec,
        data: bytes,
        ts: int,
        keyframe: bool,
        now: float,
        seq: int | None,
        after_gap: bool,
    ) -> bool:
        if not data:
            return False  # padding or a payload descriptor alone: no media, and decoders choke
        try:
            self._sink(EncodedFrame(data, ts, codec, keyframe, now, seq, after_gap))
        except Exception:
            # This runs inside aiortc's transport loop: an escaping error would stop
            # every stream of the connection, not just this consumer.
            log.exception("frame_sink_failed", codec=codec.name)
        return True

    def _learn(self, payload_type: int) -> Codec:
        params = getattr(self._receiver, CODECS_ATTR)[payload_type]
        codec = Codec(params.name, params.mimeType, params.clockRate, payload_type)
        self._codecs[payload_type] = codec
        spec = passthrough.find(codec.name)
        if self._video and spec is not None and codec.name not in self._by_payload:
            self._by_payload[codec.name] = PayloadFrameAssembler(
                spec.new_assembler(), spec.payload_error, self._requests
            )
        return codec


class ReceiverTap:
    """Encoded frames of one `RTCRtpReceiver`, delivered to `sink` without decoding."""

    def __init__(self, tap: _Tap) -> None:
        self._tap = tap

    def request_keyframe(self) -> None:
        """Asks the publisher for a keyframe with the next packet, and again until one
        comes (video only; `sluice.media.keyframes` paces it)."""
        self._tap.request_keyframe()


def tap_receiver(
    receiver: RTCRtpReceiver,
    kind: str,
    sink: FrameSink,
    *,
    hold_frames: int | None = None,
    estimate_bandwidth: bool = True,
) -> ReceiverTap:
    """Routes a receiver's encoded frames to `sink`; its track then only reports the end.

    Call before media flows (right after the transceiver exists). The receiver's
    `track.recv()` raises `MediaStreamError` once the stream ends (RTCP BYE, stop, close).

    Args:
        receiver: the receiver to tap.
        kind: the receiver's `MediaKind`.
        sink: called in the event loop with each complete frame, in order.
        hold_frames: newer frames allowed to wait behind a missing packet (0: never
            wait); defaults to 0 for audio and `DEFAULT_VIDEO_HOLD_FRAMES` for video.
            VP9 and H265 never wait: a frame leaves when complete, and after a loss
            nothing does until a keyframe, which is asked for (`sluice.media.frames`).
        estimate_bandwidth: False for a video receiver whose section is negotiated
            without `abs-send-time` (`header_extensions.without_abs_send_time`): its
            packets then go straight to the tap too (`direct_receive`), as audio's do.

    Raises:
        SeamBroken: the receiver has no jitter buffer where this aiortc version kept it.
    """
    if not hasattr(receiver, JITTER_ATTR) or not hasattr(receiver, CODECS_ATTR):
        raise SeamBroken("RTCRtpReceiver has no private jitter buffer or codec table")
    if hold_frames is None:
        hold_frames = DEFAULT_VIDEO_HOLD_FRAMES if kind == MediaKind.VIDEO else 0
    tap = _Tap(receiver, kind, sink, hold_frames)
    setattr(receiver, JITTER_ATTR, tap)
    # `receive_eagerly`'s datagrams then skip aiortc's per-packet layers.
    if kind == MediaKind.AUDIO:
        take_audio(receiver, tap.add)
    elif not estimate_bandwidth:
        take_video(receiver, tap.add)
    return ReceiverTap(tap)


@dataclass(frozen=True, slots=True)
class ReceiveCounts:
    packets_received: int
    packets_lost: int


def receive_counts(receiver: RTCRtpReceiver) -> ReceiveCounts:
    """RTP packets `receiver` has received and lost so far, summed over its SSRCs.

    `getStats()`'s `packetsReceived` and `packetsLost` (retransmissions count on their
    own SSRC): loss as an RTCP receiver report states it, sequence numbers expected minus
    packets received, before NACK repairs anything. Duplicates can make a stream's loss
    negative; it counts as 0 here.

    Raises:
        SeamBroken: the receiver keeps no statistics where this aiortc version kept them.
    """
    streams = getattr(receiver, STREAMS_ATTR, None)
    if not isinstance(streams, dict):
        raise SeamBroken("RTCRtpReceiver has no private stream statistics")
    received = lost = 0
    for stream in streams.values():
        received += stream.packets_received
        lost += max(0, stream.packets_lost)
    return ReceiveCounts(received, lost)


class FrameDecoder:
    """Decodes tapped frames with aiortc's decoders, or PyAV's for VP9 and H265."""

    def __init__(self, codec: Codec) -> None:
        self._decoder = aiortc.codecs.get_decoder(_params(codec))

    def decode(self, frame: EncodedFrame, pts: int) -> list[av.frame.Frame]:
        decoded: list[av.frame.Frame] = self._decoder.decode(JitterFrame(frame.data, pts))
        return decoded


def _params(codec: Codec) -> Any:
    return RTCRtpCodecParameters(
        mimeType=codec.mime_type, clockRate=codec.clock_rate, payloadType=codec.payload_type
    )
