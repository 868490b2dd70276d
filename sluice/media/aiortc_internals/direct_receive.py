"""RTP from SRTP straight to a receiver's tap, past aiortc's per-packet layers.

For each RTP packet aiortc builds an `RtpPacket` (parsing every header extension), routes
it, and awaits `RTCRtpReceiver._handle_rtp_packet`. For a receiver whose jitter buffer is
a tap (`receive.tap_receiver`) that handler comes down to a few things, which
`handle_rtp` does itself, in aiortc's order:

- mark the source active and count the packet in its SSRC's `StreamStatistics` (RTCP
  receiver reports and `getStats()` read them);
- video only: note it in the receiver's NACK generator and send a NACK when it shows a
  gap, and depayload it (Opus depayloads to itself);
- hand it to the tap, and for video send a PLI when the tap answers that a keyframe is
  due.

A video receiver also feeds a remote bitrate estimator, from `abs-send-time`: `take_video`
is for receivers whose section left that extension out
(`header_extensions.without_abs_send_time`), and drops the estimator, so no header
extension needs reading here. Audio receivers have neither estimator nor NACK generator.

It takes only packets of an SSRC aiortc has already routed to a taken receiver, with a
payload type the receiver negotiated (not RTX), and a well-formed header; anything else
is declined and takes aiortc's way, which learns a new SSRC, unwraps RTX, logs and drops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from struct import unpack_from
from typing import Any

import aiortc.rtcrtpreceiver
import structlog
from aiortc import RTCDtlsTransport, RTCRtpReceiver
from aiortc.clock import current_datetime
from aiortc.codecs import is_rtx

from sluice.media.aiortc_internals.guard import (
    ACTIVE_ATTR,
    CODECS_ATTR,
    ESTIMATOR_ATTR,
    NACK_ATTR,
    STREAMS_ATTR,
    SeamBroken,
)
from sluice.media.aiortc_internals.send import RTP_HEADER_BYTES
from sluice.tasks import run_eagerly

log = structlog.get_logger("sluice.media")
# Its `depayload` is looked up at each call: `codec_registry` extends it for VP9 and H265.
_aiortc_receiver: Any = aiortc.rtcrtpreceiver

TapAdd = Callable[[Any], tuple[bool, object]]  # a tap's `add`: (keyframe due, unused)


class TapRtp:
    """What a tap, `StreamStatistics.add` and `NackGenerator.add` read of an `RtpPacket`."""

    __slots__ = ("_data", "marker", "payload", "payload_type", "sequence_number", "timestamp")

    def __init__(self, payload_type: int, marker: int, sequence: int, timestamp: int) -> None:
        self.payload_type = payload_type
        self.marker = marker
        self.sequence_number = sequence
        self.timestamp = timestamp
        self.payload = b""
        self._data = b""


@dataclass(slots=True)
class _Direct:
    """One taken receiver's tables (aiortc mutates them, never replaces them)."""

    add: TapAdd
    codecs: dict[int, Any]
    streams: dict[int, Any]
    active: dict[int, Any]
    nack: Any | None  # video: the receiver's `NackGenerator`


_DIRECT_ATTR = "_sluice_direct_rtp"  # set on a receiver `handle_rtp` feeds


def take_audio(receiver: RTCRtpReceiver, add: TapAdd) -> None:
    """Lets `handle_rtp` hand an audio `receiver`'s packets to `add` (the tap's).

    Raises:
        SeamBroken: the receiver keeps its tables elsewhere in this aiortc version.
    """
    setattr(receiver, _DIRECT_ATTR, _direct(receiver, add, None))


def take_video(receiver: RTCRtpReceiver, add: TapAdd) -> None:
    """Lets `handle_rtp` hand a video `receiver`'s packets to `add` (the tap's).

    Only for a receiver whose section was negotiated without `abs-send-time`: it no
    longer estimates bandwidth.

    Raises:
        SeamBroken: the receiver keeps its tables or RTCP senders elsewhere.
    """
    nack = getattr(receiver, NACK_ATTR, None)
    rtcp = [getattr(receiver, name, None) for name in ("_send_rtcp_nack", "_send_rtcp_pli")]
    if not (hasattr(nack, "add") and hasattr(nack, "missing")) or not all(map(callable, rtcp)):
        raise SeamBroken("RTCRtpReceiver has no NACK generator or RTCP feedback senders")
    if not hasattr(receiver, ESTIMATOR_ATTR):
        raise SeamBroken("RTCRtpReceiver has no remote bitrate estimator")
    direct = _direct(receiver, add, nack)
    setattr(receiver, ESTIMATOR_ATTR, None)
    setattr(receiver, _DIRECT_ATTR, direct)


def _direct(receiver: RTCRtpReceiver, add: TapAdd, nack: Any | None) -> _Direct:
    tables = [getattr(receiver, name, None) for name in (CODECS_ATTR, STREAMS_ATTR, ACTIVE_ATTR)]
    if not all(isinstance(table, dict) for table in tables) or not hasattr(receiver, "_enabled"):
        raise SeamBroken("RTCRtpReceiver keeps no codec, statistics or source tables")
    codecs, streams, active = tables
    assert codecs is not None and streams is not None and active is not None
    return _Direct(add, codecs, streams, active, nack)


def handle_rtp(dtls: RTCDtlsTransport, plain: bytes) -> bool:
    """Handles one unprotected RTP packet for a taken receiver; False: declined
    (aiortc's `_handle_rtp_data` takes it)."""
    if len(plain) < RTP_HEADER_BYTES:
        return False
    ssrc = int.from_bytes(plain[8:12], "big")
    receiver: Any = dtls._rtp_router.ssrc_table.get(ssrc)
    direct: _Direct | None = getattr(receiver, _DIRECT_ATTR, None)
    if direct is None:
        return False
    first, marker_type = plain[0], plain[1]
    payload_type = marker_type & 0x7F
    codec = direct.codecs.get(payload_type)
    if first >> 6 != 2 or codec is None or is_rtx(codec):
        return False
    start = RTP_HEADER_BYTES + 4 * (first & 0x0F)
    if first & 0x10:  # a header extension: skip it
        if len(plain) < start + 4:
            return False
        start += 4 + 4 * unpack_from("!H", plain, start + 2)[0]
    end = len(plain)
    if first & 0x20:  # padding: its length is the last byte
        end -= plain[-1]
        if plain[-1] == 0:
            return False
    if end < start:
        return False
    stream = direct.streams.get(ssrc)
    if stream is None:
        return False  # the source's first packet: aiortc's way makes its statistics
    if not receiver._enabled:
        return True  # aiortc drops it too
    sequence, timestamp = unpack_from("!HL", plain, 2)
    packet = TapRtp(payload_type, marker_type >> 7, sequence, timestamp)
    packet.payload = payload = plain[start:end]
    direct.active[ssrc] = current_datetime()
    stream.add(packet)
    nack = direct.nack
    if nack is None:
        packet._data = payload
    else:
        if nack.add(packet):
            run_eagerly(receiver._send_rtcp_nack(ssrc, sorted(nack.missing)), log=log)
        try:
            packet._data = _aiortc_receiver.depayload(codec, payload) if payload else b""
        except ValueError:
            return True  # a malformed payload descriptor: aiortc drops it too
    try:
        keyframe_due, _ = direct.add(packet)
    except Exception:
        log.exception("tap_failed")  # as aiortc's task would: the stream goes on
        return True
    if keyframe_due:
        run_eagerly(receiver._send_rtcp_pli(ssrc), log=log)
    return True
