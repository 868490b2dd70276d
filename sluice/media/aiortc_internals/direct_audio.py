"""Audio RTP from SRTP straight to a receiver's tap, past aiortc's per-packet layers.

For each RTP packet aiortc builds an `RtpPacket` (parsing header extensions an audio
receiver never reads), routes it, and awaits `RTCRtpReceiver._handle_rtp_packet`. For
an audio receiver whose jitter buffer is a tap (`receive.tap_receiver`) that handler
comes down to three things, which `handle_audio_rtp` does itself: mark the source
active, count the packet in its SSRC's `StreamStatistics` (RTCP receiver reports and
`getStats()` read them) and hand the payload to the tap (Opus depayloads to itself).
Audio receivers have no NACK generator, bitrate estimator or RTX in aiortc.

It takes only packets of an SSRC aiortc has already routed to such a receiver, with a
payload type the receiver negotiated (not RTX), and a well-formed header; anything
else is declined and takes aiortc's way, which learns a new SSRC, logs and drops.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from struct import unpack_from
from typing import Any

import structlog
from aiortc import RTCDtlsTransport, RTCRtpReceiver
from aiortc.clock import current_datetime
from aiortc.codecs import is_rtx

from sluice.media.aiortc_internals.guard import ACTIVE_ATTR, CODECS_ATTR, STREAMS_ATTR, SeamBroken
from sluice.media.aiortc_internals.send import RTP_HEADER_BYTES

log = structlog.get_logger("sluice.media")


class AudioRtp:
    """What a tap and `StreamStatistics.add` read of an `RtpPacket`."""

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
    """One tapped audio receiver's tables (aiortc mutates them, never replaces them)."""

    add: Callable[[Any], object]  # the tap's `add`
    codecs: dict[int, Any]
    streams: dict[int, Any]
    active: dict[int, Any]


_DIRECT_ATTR = "_sluice_direct_audio"  # set on a receiver `handle_audio_rtp` feeds


def take_audio(receiver: RTCRtpReceiver, add: Callable[[Any], object]) -> None:
    """Lets `handle_audio_rtp` hand `receiver`'s packets to `add` (the tap's).

    Raises:
        SeamBroken: the receiver keeps its tables elsewhere in this aiortc version.
    """
    tables = [getattr(receiver, name, None) for name in (CODECS_ATTR, STREAMS_ATTR, ACTIVE_ATTR)]
    if not all(isinstance(table, dict) for table in tables) or not hasattr(receiver, "_enabled"):
        raise SeamBroken("RTCRtpReceiver keeps no codec, statistics or source tables")
    codecs, streams, active = tables
    assert codecs is not None and streams is not None and active is not None
    setattr(receiver, _DIRECT_ATTR, _Direct(add, codecs, streams, active))


def handle_audio_rtp(dtls: RTCDtlsTransport, plain: bytes) -> bool:
    """Handles one unprotected RTP packet for a tapped audio receiver; False: declined
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
    packet = AudioRtp(payload_type, marker_type >> 7, sequence, timestamp)
    packet.payload = packet._data = plain[start:end]
    direct.active[ssrc] = current_datetime()
    stream.add(packet)
    try:
        direct.add(packet)  # audio taps never ask for a keyframe
    except Exception:
        log.exception("audio_tap_failed")  # as aiortc's task would: the stream goes on
    return True
