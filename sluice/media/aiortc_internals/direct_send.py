"""Encoded packets sent by the sender's own task, past aiortc's per-packet layers.

An `RTCRtpSender` whose track returns encoded packets (`av.Packet`, e.g. ingest's Opus)
still takes aiortc's whole way for each: `_next_encoded_frame` converts the timestamp
through `Fraction`s and wraps the payload in an `RTCEncodedFrame`, `_run_rtp` builds an
`RtpPacket` (reading the NTP clock twice through `datetime`), and four coroutines
(`RTCDtlsTransport._send_rtp`, the ICE connection's `send` and `sendto`, its protocol's
`send_data`) stand around one `sendto`. Per packet, every 20 ms, in every ingest process.

`send_directly(sender)` replaces the sender's `_next_encoded_frame` (on the instance;
`_run_rtp` looks it up at every turn) by one that awaits the track as before and then
sends the packet aiortc would send (payload type, SSRC, sequence number, timestamp,
marker, `abs-send-time` and `mid`; one RTP packet per encoded packet): protected with the
DTLS transport's SRTP session and written to the nominated ICE pair's socket. It keeps the
counters RTCP sender reports and `getStats()` read and the history NACKs are answered
from, and returns None, so aiortc's loop has nothing left to send. The pacing (the
track's `recv`), the task and how it ends stay aiortc's: a transport no longer connected
raises `ConnectionError` where `_send_rtp` or aioice would, which ends the loop the same way.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Any

import structlog
from aiortc import RTCRtpSender
from aiortc.clock import current_ntp_time
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpparameters import RTCRtpCodecParameters
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, RtpPacket
from aiortc.utils import random32
from av import Packet

from sluice.media.aiortc_internals.guard import (
    SENDER_ATTRS,
    SENDER_PREFIX,
    TX_BYTES_ATTR,
    TX_PACKETS_ATTR,
    SeamBroken,
    count_one,
)

log = structlog.get_logger("sluice.media")

_NEXT = "_next_encoded_frame"
NextFrame = Callable[[RTCRtpCodecParameters], Awaitable[Any]]


def send_directly(sender: RTCRtpSender) -> None:
    """Makes `sender` send each packet its track returns itself (see the module docstring).

    Call before the sender starts (right after `addTransceiver`), so that one numbering
    and one timestamp origin serve the whole stream. Its track must return `av.Packet`s
    (a frame raises `TypeError`, which aiortc logs as it stops the sender).

    Raises:
        SeamBroken: aiortc's sender no longer has the shape this relies on.
    """
    missing = [a for a in SENDER_ATTRS if not hasattr(sender, SENDER_PREFIX + a)]
    if missing or not callable(getattr(sender, _NEXT, None)) or not hasattr(sender, "_enabled"):
        raise SeamBroken(f"RTCRtpSender has no {missing or [_NEXT, '_enabled']}")
    setattr(sender, _NEXT, _DirectSend(sender, getattr(sender, _NEXT)).next_encoded_frame)


class _DirectSend:
    """One sender's numbering and what it reads of aiortc's sender once it has started."""

    def __init__(self, sender: RTCRtpSender, aiortc_next: NextFrame) -> None:
        self._sender = sender
        self._aiortc_next = aiortc_next
        self._started = False  # the transports checked and the codec read, at the first turn
        self._sequence = random_sequence_number()
        self._timestamp_origin = random32()
        self._payload_type = 0
        self._time_base = Fraction(1)  # the codec's clock, 1/clockRate

    async def next_encoded_frame(self, codec: RTCRtpCodecParameters) -> Any:
        """`RTCRtpSender._next_encoded_frame`, sending the packet instead of returning it
        (None: nothing for aiortc's loop to send)."""
        sender = self._sender
        if not self._started:
            self._started = True
            if not _sends_directly(sender.transport):
                # Nothing sent yet: aiortc's own way numbers the whole stream.
                log.warning("direct_send_unavailable", ssrc=sender._ssrc)
                delattr(sender, _NEXT)
                return await self._aiortc_next(codec)
            # `_run_rtp` passes the same negotiated codec at every turn.
            if codec.payloadType is None:
                raise SeamBroken("the sender's codec has no payload type")
            self._payload_type = codec.payloadType
            self._time_base = Fraction(1, codec.clockRate)
        track = sender.track
        if track is None:
            return None  # replaced by none: aiortc's loop waits for one itself
        packet = await track.recv()
        if not sender._enabled:
            return None  # aiortc drops what a disabled sender's track returns, too
        if not isinstance(packet, Packet):
            raise TypeError(f"send_directly needs encoded packets, not {type(packet).__name__}")
        pts, time_base = packet.pts, packet.time_base
        if pts is None or time_base is None:
            raise TypeError("send_directly needs packets with pts and time_base")
        ticks = pts if time_base == self._time_base else int(pts * time_base / self._time_base)
        self._send(ticks, bytes(packet))
        return None

    def _send(self, pts: int, payload: bytes) -> None:
        sender = self._sender
        dtls = sender.transport
        if dtls._state is not State.CONNECTED:
            raise ConnectionError("Cannot send encrypted RTP, not connected")  # as _send_rtp
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            raise ConnectionError("Cannot send data, not connected")  # as aioice's sendto
        sequence = self._sequence
        self._sequence = (sequence + 1) & 0xFFFF
        packet = RtpPacket(
            payload_type=self._payload_type,
            marker=1,  # the last (only) packet of its frame, as aiortc marks it
            sequence_number=sequence,
            timestamp=(self._timestamp_origin + pts) & 0xFFFFFFFF,
            ssrc=sender._ssrc,
            payload=payload,
        )
        ntp_time = current_ntp_time()
        packet.extensions.abs_send_time = (ntp_time >> 14) & 0x00FFFFFF
        packet.extensions.mid = getattr(sender, SENDER_PREFIX + "mid")
        getattr(sender, SENDER_PREFIX + "rtp_history")[sequence % RTP_HISTORY_SIZE] = packet
        extensions_map = getattr(sender, SENDER_PREFIX + "rtp_header_extensions_map")
        data = dtls._tx_srtp.protect(packet.serialize(extensions_map))
        pair.protocol.transport.sendto(data, pair.remote_addr)
        count_one(dtls, TX_BYTES_ATTR, TX_PACKETS_ATTR, len(data))
        setattr(sender, SENDER_PREFIX + "ntp_timestamp", ntp_time)
        setattr(sender, SENDER_PREFIX + "rtp_timestamp", packet.timestamp)
        count_one(
            sender, SENDER_PREFIX + "octet_count", SENDER_PREFIX + "packet_count", len(payload)
        )


def _sends_directly(dtls: Any) -> bool:
    """Whether the DTLS transport and its ICE connection have what `_send` uses."""
    ice = getattr(getattr(dtls, "transport", None), "_connection", None)
    return (
        hasattr(dtls, "_tx_srtp")
        and hasattr(dtls, "_state")
        and all(hasattr(dtls, name) for name in (TX_BYTES_ATTR, TX_PACKETS_ATTR))
        and isinstance(getattr(ice, "_nominated", None), dict)
    )
