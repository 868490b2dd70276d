"""Every reliance on aiortc internals lives here; `tests/sfu/test_aiortc_internals.py` pins it.

Receive side: aiortc has no encoded-frame API. `RTCRtpReceiver._handle_rtp_packet` unwraps
RTX, keeps statistics, sends NACKs, depayloads into `packet._data`, then hands the packet
to its private `JitterBuffer.add()`, whose `(pli_flag, frame)` result decides whether a
PLI goes to the publisher and whether a frame reaches the decoder thread. `tap_receiver`
swaps that one object for a `_Tap` with the same `add()`: frames leave through a callback
as soon as they are complete (`sluice.media.frames.FrameAssembler`), nothing is ever
decoded, and a keyframe request rides out on the next `pli_flag`. Everything aiortc does around it
(RTCP reports, NACK, BYE handling, ending the track) keeps working.

Send side (`sluice.media.packet_track` feeds senders pre-encoded packets): a subscriber's
PLI/FIR ends in the sender's private `_send_keyframe()`, which `on_keyframe_request` replaces.
`restrict_codecs` narrows a transceiver's negotiated codecs to the forwarded one.

Load generation: `divert_rtp` takes a receiver's connection's RTP and RTCP datagrams off
aiortc's receive path (aioice's private protocol list), for benchmark subscribers that
only time packet arrivals.

Statistics: `receive_counts` reads a receiver's private per-SSRC statistics, the figures
its async `getStats()` reports, without awaiting (a metrics scrape is synchronous).

Codecs: aiortc knows Opus, G722, PCMU, PCMA, VP8 and H264 only. `register_codecs` teaches
every peer connection of the process VP9 and H265 (`sluice.media.passthrough`): forwarded
as they came, never encoded or decoded by the SFU. It patches aiortc's module globals, so
nothing calls it at import time: each process's entry point does, once, before it makes a
peer connection (the SFU app, the worker host, the benchmarks and the tests).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import aiortc.codecs
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import av
import structlog
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs import is_rtx
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters

from sluice.errors import MediaError
from sluice.media import passthrough
from sluice.media.frames import FrameAssembler, PayloadFrameAssembler, is_keyframe, starts_frame
from sluice.media.types import Codec, EncodedFrame, FrameSink
from sluice.state.records import MediaKind

log = structlog.get_logger("sluice.sfu")

# Name-mangled attributes of RTCRtpReceiver this module reads or replaces.
_JITTER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_CODECS_ATTR = "_RTCRtpReceiver__codecs"
_STREAMS_ATTR = "_RTCRtpReceiver__remote_streams"  # SSRC → StreamStatistics
DEFAULT_VIDEO_HOLD_FRAMES = 2  # ~66 ms at 30 fps for a NACK to fill a hole


class SeamBroken(MediaError):
    """aiortc no longer has the shape this module relies on (an upgrade changed it)."""


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
        self._keyframe_wanted = False
        self.capacity = 512  # JitterBuffer's attribute, in case anything reads it

    def request_keyframe(self) -> None:
        self._keyframe_wanted = True

    def add(self, packet: Any) -> tuple[bool, None]:
        codec = self._codecs.get(packet.payload_type) or self._learn(packet.payload_type)
        seq, ts, marker = packet.sequence_number, packet.timestamp, bool(packet.marker)
        now = time.monotonic()
        by_payload = self._by_payload.get(codec.name)
        if by_payload is not None:
            # VP9 and H265 frame edges and keyframes are in the raw payload, not `_data`.
            for done in by_payload.add(seq, ts, marker, packet.payload):
                self._deliver(codec, done.data, done.timestamp, done.keyframe, now)
            lost = by_payload.keyframe_due(now)
        else:
            assembler = self._assembler
            starts = not assembler.synced and starts_frame(codec.name, packet.payload)
            for frame in assembler.add(seq, ts, marker, packet._data, starts):
                keyframe = is_keyframe(codec.name, frame.data) if self._video else True
                self._deliver(codec, frame.data, frame.timestamp, keyframe, now)
            lost, assembler.lost = assembler.lost, False
        pli = self._video and (self._keyframe_wanted or lost)
        if pli:
            self._keyframe_wanted = False
        return pli, None

    def _deliver(self, codec: Codec, data: bytes, ts: int, keyframe: bool, now: float) -> None:
        if not data:
            return  # padding or a payload descriptor alone: no media, and decoders choke
        try:
            self._sink(EncodedFrame(data, ts, codec, keyframe, now))
        except Exception:
            # This runs inside aiortc's transport loop: an escaping error would stop
            # every stream of the connection, not just this consumer.
            log.exception("frame_sink_failed", codec=codec.name)

    def _learn(self, payload_type: int) -> Codec:
        params = getattr(self._receiver, _CODECS_ATTR)[payload_type]
        codec = Codec(params.name, params.mimeType, params.clockRate, payload_type)
        self._codecs[payload_type] = codec
        spec = passthrough.find(codec.name)
        if self._video and spec is not None and codec.name not in self._by_payload:
            self._by_payload[codec.name] = PayloadFrameAssembler(
                spec.new_assembler(), spec.payload_error
            )
        return codec


class ReceiverTap:
    """Encoded frames of one `RTCRtpReceiver`, delivered to `sink` without decoding."""

    def __init__(self, tap: _Tap) -> None:
        self._tap = tap

    def request_keyframe(self) -> None:
        """Sends a PLI to the publisher with the next packet (video only)."""
        self._tap.request_keyframe()


def tap_receiver(
    receiver: RTCRtpReceiver,
    kind: str,
    sink: FrameSink,
    *,
    hold_frames: int | None = None,
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

    Raises:
        SeamBroken: the receiver has no jitter buffer where this aiortc version kept it.
    """
    if not hasattr(receiver, _JITTER_ATTR) or not hasattr(receiver, _CODECS_ATTR):
        raise SeamBroken("RTCRtpReceiver has no private jitter buffer or codec table")
    if hold_frames is None:
        hold_frames = DEFAULT_VIDEO_HOLD_FRAMES if kind == MediaKind.VIDEO else 0
    tap = _Tap(receiver, kind, sink, hold_frames)
    setattr(receiver, _JITTER_ATTR, tap)
    return ReceiverTap(tap)


def on_keyframe_request(sender: RTCRtpSender, callback: Callable[[], None]) -> None:
    """Calls `callback` when the remote end of `sender` sends a PLI or FIR.

    Raises:
        SeamBroken: the sender no longer dispatches keyframe requests this way.
    """
    if not callable(getattr(sender, "_send_keyframe", None)):
        raise SeamBroken("RTCRtpSender has no _send_keyframe()")
    sender._send_keyframe = callback  # type: ignore[method-assign]


def restrict_codecs(transceiver: RTCRtpTransceiver, codec_name: str) -> None:
    """Makes a sending transceiver use only `codec_name` (and its RTX): the forwarded one.

    A forwarder cannot translate, so a subscriber must get the publisher's codec. Offers
    the SFU makes follow the public `setCodecPreferences`; a section already negotiated
    from the client's offer keeps aiortc's private `_codecs` list, filtered here.

    Raises:
        ValueError: the transceiver cannot carry that codec.
        SeamBroken: the negotiated codec list is no longer where this relies on.
    """
    kind = transceiver.kind
    wanted = f"{kind}/{codec_name}".lower()
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    preferred = [c for c in capabilities if c.mimeType.lower() in (wanted, f"{kind}/rtx")]
    if not any(c.mimeType.lower() == wanted for c in preferred):
        raise ValueError(f"aiortc cannot send {codec_name}")
    transceiver.setCodecPreferences(preferred)
    if not hasattr(transceiver, "_codecs"):
        raise SeamBroken("RTCRtpTransceiver has no _codecs")
    negotiated = transceiver._codecs
    if not negotiated:
        return  # nothing negotiated yet: the preferences will shape the SFU's offer
    base = [c for c in negotiated if c.mimeType.lower() == wanted]
    if not base:
        raise ValueError(f"the remote side does not accept {codec_name}")
    payload_types = {c.payloadType for c in base}
    rtx = [c for c in negotiated if is_rtx(c) and c.parameters.get("apt") in payload_types]
    # The sender sends with the first codec; its RTX is found by `apt`.
    transceiver._codecs = base + rtx


DatagramSink = Callable[[bytes, float], None]  # (datagram, time.monotonic() on arrival)


def divert_rtp(receiver: RTCRtpReceiver, sink: DatagramSink) -> None:
    """Hands every RTP and RTCP datagram of `receiver`'s connection to `sink`, not aiortc.

    For load generators: RTP headers are not encrypted by SRTP, so a subscriber that only
    times packet arrivals can read sequence numbers and timestamps for a few
    microseconds per packet instead of paying aiortc's whole receive path. STUN and DTLS
    still reach aiortc, so the connection is set up and kept alive as usual. Call after
    the local description is set (candidates gathered) and before media flows.

    Raises:
        SeamBroken: the ICE connection no longer keeps its sockets' protocols where
            this relies on (aiortc's `RTCIceTransport._connection`, aioice's
            `Connection._protocols`).
    """
    connection = getattr(receiver.transport.transport, "_connection", None)
    protocols = getattr(connection, "_protocols", None)
    if not isinstance(protocols, list) or not protocols:
        raise SeamBroken("the ICE connection has no list of datagram protocols")
    for protocol in protocols:
        original = protocol.datagram_received

        def datagram_received(data: Any, addr: Any, original: Any = original) -> None:
            # RFC 7983: a first byte of 128-191 is RTP or RTCP; the rest is STUN or DTLS.
            if isinstance(data, bytes) and data and 128 <= data[0] <= 191:
                sink(data, time.monotonic())
            else:
                original(data, addr)

        protocol.datagram_received = datagram_received


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
    streams = getattr(receiver, _STREAMS_ATTR, None)
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


# --- codecs aiortc lacks ---------------------------------------------------------------

_VIDEO_FEEDBACK = (("nack", None), ("nack", "pli"), ("goog-remb", None))  # as aiortc's VP8
_registered = False


def register_codecs() -> None:
    """Teaches aiortc VP9 and H265 (`sluice.media.passthrough`), for the whole process; idempotent.

    aiortc reads its codec tables through module globals, looked up at call time:
    `aiortc.codecs.CODECS` (offers, answers, capabilities, `setCodecPreferences`), and
    the functions `rtcrtpsender.get_encoder`, `rtcrtpreceiver.get_decoder`,
    `rtcrtpreceiver.depayload` and `rtcpeerconnection.is_codec_compatible` (which tells
    formats apart only for H264). Each is extended here for the new codecs and left as
    it was for the others; VP8 and H264 stay first, so default offers do not change.

    Raises:
        SeamBroken: one of those globals is missing (an aiortc upgrade moved it).
    """
    global _registered
    if _registered:
        return
    targets = [
        (aiortc.rtcrtpsender, "get_encoder"),
        (aiortc.rtcrtpreceiver, "get_decoder"),
        (aiortc.rtcrtpreceiver, "depayload"),
        (aiortc.rtcpeerconnection, "is_codec_compatible"),
        (aiortc.codecs, "get_encoder"),
        (aiortc.codecs, "get_decoder"),
        (aiortc.codecs, "depayload"),
    ]
    for module, name in targets:
        if not callable(getattr(module, name, None)):
            raise SeamBroken(f"aiortc has no {module.__name__}.{name}")
    tables = getattr(aiortc.codecs, "CODECS", None)
    if not isinstance(tables, dict) or not isinstance(tables.get("video"), list):
        raise SeamBroken("aiortc.codecs.CODECS is no longer a dict of codec lists")
    video: list[RTCRtpCodecParameters] = tables["video"]
    payload_type = 1 + max(c.payloadType for codecs in tables.values() for c in codecs)
    for spec in passthrough.PASSTHROUGH_CODECS:
        video += [
            RTCRtpCodecParameters(
                mimeType=spec.mime_type,
                clockRate=passthrough.VIDEO_CLOCK,
                payloadType=payload_type,
                rtcpFeedback=[RTCRtcpFeedback(type=t, parameter=p) for t, p in _VIDEO_FEEDBACK],
                parameters=dict(spec.parameters),
            ),
            RTCRtpCodecParameters(
                mimeType="video/rtx",
                clockRate=passthrough.VIDEO_CLOCK,
                payloadType=payload_type + 1,
                parameters={"apt": payload_type},
            ),
        ]
        payload_type += 2
    for module, name in targets:
        setattr(module, name, _EXTENSIONS[name](getattr(module, name)))
    _registered = True


def _extend_get_encoder(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def get_encoder(codec: Any) -> Any:
        spec = passthrough.find(codec.name)
        return original(codec) if spec is None else spec.new_encoder()

    return get_encoder


def _extend_get_decoder(original: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def get_decoder(codec: Any) -> Any:
        spec = passthrough.find(codec.name)
        return original(codec) if spec is None else passthrough.PyAvDecoder(spec.ffmpeg_decoder)

    return get_decoder


def _extend_depayload(original: Callable[[Any, bytes], bytes]) -> Callable[[Any, bytes], bytes]:
    def depayload(codec: Any, payload: bytes) -> bytes:
        spec = passthrough.find(codec.name)
        if spec is None:
            return original(codec, payload)
        try:
            return spec.depayload(payload)
        except spec.payload_error as exc:
            # The receiver skips a packet on ValueError; anything else would escape
            # into aiortc's transport loop.
            raise ValueError(str(exc)) from exc

    return depayload


def _extend_is_codec_compatible(original: Callable[[Any, Any], bool]) -> Callable[[Any, Any], bool]:
    def is_codec_compatible(a: Any, b: Any) -> bool:
        if not original(a, b):
            return False
        # A browser offers VP9 profiles 0 and 2 (H265 profiles 1 and 2) under one name.
        spec = passthrough.find(a.name)
        return spec is None or spec.same_format(a.parameters, b.parameters)

    return is_codec_compatible


_EXTENSIONS: dict[str, Callable[[Any], Any]] = {
    "get_encoder": _extend_get_encoder,
    "get_decoder": _extend_get_decoder,
    "depayload": _extend_depayload,
    "is_codec_compatible": _extend_is_codec_compatible,
}
