"""Every reliance on aiortc internals lives here; `tests/sfu/test_aiortc_internals.py` pins it.

Receive side: aiortc has no encoded-frame API. `RTCRtpReceiver._handle_rtp_packet` unwraps
RTX, keeps statistics, sends NACKs, depayloads into `packet._data`, then hands the packet
to its private `JitterBuffer.add()`, whose `(pli_flag, frame)` result decides whether a
PLI goes to the publisher and whether a frame reaches the decoder thread. `tap_receiver`
swaps that one object for a `_Tap` with the same `add()`: frames leave through a callback
as soon as they are complete (`sluice.media.frames.FrameAssembler`), nothing is ever
decoded, and a keyframe request rides out on the next `pli_flag` (and again, as
`sluice.media.keyframes` paces it, until a keyframe comes). Everything aiortc does around it
(RTCP reports, NACK, BYE handling, ending the track) keeps working.

Send side (`sluice.media.packet_track` feeds senders pre-encoded packets): a subscriber's
PLI/FIR ends in the sender's private `_send_keyframe()`, which `on_keyframe_request` replaces.
`restrict_codecs` narrows a transceiver's negotiated codecs to the forwarded one. A sender
numbers its packets itself, one by one, in a local variable of its private `_run_rtp`;
`renumber_like_source` rewrites the number in each serialized RTP packet on its way to
the DTLS transport's private `_send_rtp` (before SRTP), so that a forwarded audio stream
keeps its source's gaps and order (`sluice.media.renumber`).

Load generation: `divert_rtp` takes a receiver's connection's RTP and RTCP datagrams off
aiortc's receive path (aioice's private protocol list), for benchmark subscribers that
only time packet arrivals.

Statistics: `receive_counts` reads a receiver's private per-SSRC statistics, the figures
its async `getStats()` reports, without awaiting (a metrics scrape is synchronous).

Codecs: aiortc knows Opus, G722, PCMU, PCMA, VP8 and H264 only. `register_codecs` teaches
every peer connection of the process VP9 and H265 (`sluice.media.passthrough`): forwarded
as they came, never encoded or decoded by the SFU; and has Opus offered and answered with
`useinbandfec=1`, so that browsers send the in-band FEC egress conceals losses with. It
patches aiortc's module globals, so nothing calls it at import time: each process's entry
point does, once, before it makes a peer connection (the SFU app, the worker host, the
benchmarks and the tests).

ICE ports: aioice binds each host candidate's socket to a port the OS picks, with no
option to choose. `pin_ice_ports` has aiortc build its ICE agents from a subclass that
binds them inside a range instead (`SLUICE_ICE_UDP_PORTS`), so a firewall can open one
range rather than every ephemeral port.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import ipaddress
import itertools
import random
import socket
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import aioice
import aioice.ice
import aioice.turn
import aiortc.codecs
import aiortc.rtcicetransport
import aiortc.rtcpeerconnection
import aiortc.rtcrtpreceiver
import aiortc.rtcrtpsender
import av
import structlog
from aioice.candidate import candidate_foundation, candidate_priority
from aiortc import RTCRtpReceiver, RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs import is_rtx
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtcrtpparameters import RTCRtcpFeedback, RTCRtpCodecParameters
from aiortc.rtp import is_rtcp

from sluice.errors import MediaError
from sluice.media import passthrough
from sluice.media.frames import FrameAssembler, PayloadFrameAssembler, is_keyframe, starts_frame
from sluice.media.keyframes import KeyframeRequests
from sluice.media.renumber import SequenceMap
from sluice.media.types import Codec, EncodedFrame, FrameSink
from sluice.state.records import MediaKind

log = structlog.get_logger("sluice.sfu")

# Name-mangled attributes of RTCRtpReceiver this module reads or replaces.
_JITTER_ATTR = "_RTCRtpReceiver__jitter_buffer"
_CODECS_ATTR = "_RTCRtpReceiver__codecs"
_STREAMS_ATTR = "_RTCRtpReceiver__remote_streams"  # SSRC → StreamStatistics
DEFAULT_VIDEO_HOLD_FRAMES = 2  # ~66 ms at 30 fps for a NACK to fill a hole
RTP_HEADER_BYTES = 12


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
        params = getattr(self._receiver, _CODECS_ATTR)[payload_type]
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


_RENUMBERED: weakref.WeakKeyDictionary[Any, dict[int, Callable[[bytes], bytes]]] = (
    weakref.WeakKeyDictionary()
)  # DTLS transport → its senders' rewriters by SSRC


def renumber_like_source(sender: RTCRtpSender, source_sequence: Callable[[], int | None]) -> None:
    """Makes `sender` send each packet under its source's sequence number plus a constant.

    For single-packet frames (audio) only: the sender must send exactly one RTP packet
    per packet its track returns. `source_sequence()` is read as each packet goes out:
    the source number of the packet the track returned last (None: number as usual).
    Call before the sender starts (right after the transceiver gets its track).

    Raises:
        SeamBroken: the sender or its transport no longer has the shape this relies on.
    """
    if not isinstance(getattr(sender, "_ssrc", None), int) or not callable(sender.send):
        raise SeamBroken("RTCRtpSender has no _ssrc or send()")
    numbers = SequenceMap()

    def rewrite(packet: bytes) -> bytes:
        source = source_sequence()
        if source is None:
            return packet
        number = numbers.outgoing(source, int.from_bytes(packet[2:4], "big"))
        return packet[:2] + number.to_bytes(2, "big") + packet[4:]

    original_send = sender.send

    async def send(parameters: Any) -> None:
        # The transport is final once aiortc starts the sender (bundling may replace it
        # during negotiation).
        _rewriters(sender.transport)[sender._ssrc] = rewrite
        await original_send(parameters)

    sender.send = send  # type: ignore[method-assign]


def _rewriters(transport: Any) -> dict[int, Callable[[bytes], bytes]]:
    table = _RENUMBERED.get(transport)
    if table is not None:
        return table
    original = getattr(transport, "_send_rtp", None)
    if not callable(original):
        raise SeamBroken("RTCDtlsTransport has no _send_rtp()")
    table = {}

    async def send_rtp(data: bytes) -> None:
        if len(data) >= RTP_HEADER_BYTES and not is_rtcp(data):
            rewrite = table.get(int.from_bytes(data[8:12], "big"))
            if rewrite is not None:
                data = rewrite(data)
        await original(data)

    transport._send_rtp = send_rtp
    _RENUMBERED[transport] = table
    return table


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
    for codec in tables.get("audio", []):
        if codec.mimeType.lower() == "audio/opus":
            # Tells a publisher (a browser) to send in-band FEC, which egress uses to
            # rebuild a lost frame; aiortc writes it in every opus fmtp line.
            codec.parameters["useinbandfec"] = 1
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


# --- ICE host ports ----------------------------------------------------------------------


class _PinnedPortsConnection(aioice.Connection):
    """aioice's ICE agent, its host candidates bound to a port of `ports`."""

    ports: ClassVar[range] = range(0)

    async def get_component_candidates(
        self,
        component: int,
        addresses: list[str],
        timeout: int = 5,  # noqa: ASYNC109 (aioice's signature, overridden as it is)
    ) -> list[aioice.Candidate]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        hosts = [p for a in addresses if (p := await _bind_host(self, component, a, self.ports))]
        self._protocols += hosts  # the agent pairs remote candidates with these
        stun = self.stun_server
        queries = [
            asyncio.create_task(aioice.ice.server_reflexive_candidate(host, stun))
            for host in hosts
            if stun and ipaddress.ip_address(host.local_candidate.host).version == 4
        ]
        try:
            # Given no addresses, aioice binds nothing itself and gathers a TURN relay only.
            relayed = await super().get_component_candidates(component, [], timeout)
            if queries:
                await asyncio.wait(queries, timeout=max(0.0, deadline - loop.time()))
        finally:
            for query in queries:
                query.cancel()
            await asyncio.gather(*queries, return_exceptions=True)
        reflexive = [q.result()[0] for q in queries if not q.cancelled() and not q.exception()]
        return [host.local_candidate for host in hosts] + reflexive + relayed


async def _bind_host(
    connection: aioice.Connection, component: int, address: str, ports: range
) -> aioice.ice.StunProtocol | None:
    """A host candidate's socket on `address`, at the first free port of `ports`.

    The search starts at a random port, so processes do not all crowd the bottom of the
    range. No free port, or an address that cannot be bound: no candidate there, as
    aioice does when its own bind fails.
    """
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    start = random.randrange(len(ports))
    for port in itertools.chain(ports[start:], ports[:start]):
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind((address, port))
            break
        except OSError as exc:
            sock.close()
            if exc.errno != errno.EADDRINUSE:
                log.warning("ice_bind_failed", address=address, port=port, error=str(exc))
                return None
    else:
        log.warning("ice_ports_exhausted", address=address, ports=f"{ports[0]}-{ports[-1]}")
        return None
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, aioice.turn.UDP_SOCKET_BUFFER_SIZE)
    _, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: aioice.ice.StunProtocol(connection), sock=sock
    )
    host, bound = sock.getsockname()[:2]
    protocol.local_candidate = aioice.Candidate(
        foundation=candidate_foundation("host", "udp", host),
        component=component,
        transport="udp",
        priority=candidate_priority(component, "host"),
        host=host,
        port=bound,
        type="host",
    )
    return protocol


def pin_ice_ports(ports: range | None) -> None:
    """Binds the ICE host sockets of every peer connection made from now on to `ports`.

    aiortc looks its agent class up in `aiortc.rtcicetransport` each time it gathers, so
    swapping that module global reaches every later peer of the process. None gives the
    choice back to the OS (aioice's own agent).

    Raises:
        ValueError: `ports` is empty.
        SeamBroken: aioice or aiortc no longer has the shape the subclass relies on.
    """
    if ports is None:
        aiortc.rtcicetransport.Connection = aioice.Connection  # type: ignore[attr-defined]
        return
    if not ports:
        raise ValueError("the ICE port range is empty")
    gather = inspect.signature(aioice.Connection.get_component_candidates).parameters
    if (
        not isinstance(getattr(aiortc.rtcicetransport, "Connection", None), type)
        or list(gather) != ["self", "component", "addresses", "timeout"]
        or not callable(getattr(aioice.ice, "server_reflexive_candidate", None))
        or not isinstance(getattr(aioice.turn, "UDP_SOCKET_BUFFER_SIZE", None), int)
        or not isinstance(getattr(aioice.Connection(False), "_protocols", None), list)
    ):
        raise SeamBroken("aioice's host candidate gathering is no longer where this relies on")
    _PinnedPortsConnection.ports = ports
    aiortc.rtcicetransport.Connection = _PinnedPortsConnection  # type: ignore[attr-defined]
