"""Forwarded audio sent as RTP at once, without a task switch and aiortc's sender loop.

An `RTCRtpSender` fed by a `PacketTrack` wakes its `_run_rtp` task for every packet
(one task switch per packet per subscriber), converts its timestamp through `Fraction`s,
builds an `RtpPacket`, and awaits `_send_rtp`, the ICE connection's `send`, `sendto`
and its protocol's `send_data`: four coroutines around one `sendto`. An SFU pays that
for every subscriber of every packet.

`DirectAudioSend` does the same work in the caller's stack: the packet aiortc would
build (its payload type, marker, SSRC, `mid` and `abs-send-time` extensions, one packet
per frame), numbered like its source (`sluice.media.renumber`), protected with the DTLS
transport's SRTP session and written to the nominated ICE pair's socket. It keeps the
counters aiortc's RTCP sender reports and `getStats()` read, and the history NACKs are
answered from. It takes over when aiortc starts the sender (`send()`), so a stream is
never numbered or timed two ways: what the track queued while the connection was set up
goes first, and the sender's own loop then waits on a track that stays empty.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import structlog
from aiortc import RTCRtpSender
from aiortc.clock import current_ntp_time
from aiortc.rtcdtlstransport import State
from aiortc.rtcrtpsender import random_sequence_number
from aiortc.rtp import RTP_HISTORY_SIZE, RtpPacket
from aiortc.utils import random32

from sluice.media.aiortc_internals.guard import SeamBroken
from sluice.media.renumber import SequenceMap

log = structlog.get_logger("sluice.media")

_SENDER = "_RTCRtpSender__"  # the prefix of RTCRtpSender's name-mangled attributes
_DTLS_TX_BYTES = "_RTCDtlsTransport__tx_bytes"
_DTLS_TX_PACKETS = "_RTCDtlsTransport__tx_packets"
_SENDER_ATTRS = ("mid", "rtp_header_extensions_map", "rtp_history", "packet_count")


class DirectAudioSend:
    """Sends a forwarded audio stream through `sender`'s transport, frame by frame.

    Create it before the sender starts (right after the transceiver gets its track).
    Until aiortc starts the sender, `send` declines and frames go to the track as
    before; `on_start` is called once it has started, to hand over what was queued.

    Raises:
        SeamBroken: aiortc's sender or transports no longer have the shape this relies on.
    """

    def __init__(self, sender: RTCRtpSender, on_start: Callable[[], None]) -> None:
        missing = [a for a in _SENDER_ATTRS if not hasattr(sender, _SENDER + a)]
        if missing or not isinstance(getattr(sender, "_ssrc", None), int):
            raise SeamBroken(f"RTCRtpSender has no {missing or '_ssrc'}")
        self._sender = sender
        self._numbers = SequenceMap()
        self._next_sequence = random_sequence_number()
        self._timestamp_origin = random32()
        self._started = False
        self._payload_type = 0
        self._clock_rate = 0
        self._mid: str | None = None
        self._extensions_map: Any = None
        self._history: dict[int, RtpPacket] = {}
        original_send = sender.send

        async def send(parameters: Any) -> None:
            await original_send(parameters)
            self._start(parameters)
            on_start()

        sender.send = send  # type: ignore[method-assign]

    @property
    def started(self) -> bool:
        return self._started

    def _start(self, parameters: Any) -> None:
        codec = parameters.codecs[0]
        self._payload_type = codec.payloadType
        self._clock_rate = codec.clockRate
        sender = self._sender
        # Set by `send()` and never replaced after it (only their contents change).
        self._mid = getattr(sender, _SENDER + "mid")
        self._extensions_map = getattr(sender, _SENDER + "rtp_header_extensions_map")
        self._history = getattr(sender, _SENDER + "rtp_history")
        transport = self._sender.transport
        ice = getattr(transport.transport, "_connection", None)
        if not hasattr(transport, "_tx_srtp") or not isinstance(
            getattr(ice, "_nominated", None), dict
        ):
            log.warning("direct_send_unavailable")  # aiortc's loop sends, as it always did
            return
        self._started = True

    def send(self, payload: bytes, pts: int, clock_rate: int, source_sequence: int | None) -> bool:
        """Sends one frame as one RTP packet; False until the sender has started.

        Args:
            payload: the encoded frame.
            pts: its timestamp in `clock_rate` units, unwrapped.
            clock_rate: the source's RTP clock.
            source_sequence: the number the publisher sent it under (None: the next one).
        """
        if not self._started:
            return False
        sender = self._sender
        dtls = sender.transport
        if dtls._state is not State.CONNECTED:
            return True  # aiortc's loop would stop sending here too
        sequence = self._next_sequence
        if source_sequence is not None:
            sequence = self._numbers.outgoing(source_sequence, sequence)
        self._next_sequence = (sequence + 1) & 0xFFFF
        if clock_rate != self._clock_rate:
            pts = pts * self._clock_rate // clock_rate
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
        packet.extensions.mid = self._mid
        self._history[sequence % RTP_HISTORY_SIZE] = packet
        pair = dtls.transport._connection._nominated.get(1)
        if pair is None:
            return True  # ICE lost its pair: aiortc's `sendto` would raise and stop
        try:
            data = dtls._tx_srtp.protect(packet.serialize(self._extensions_map))
            pair.protocol.transport.sendto(data, pair.remote_addr)
        except Exception:
            # Called from a publisher's receive path: one subscriber's failure must not
            # stop the frame reaching the others.
            log.exception("direct_send_failed", ssrc=sender._ssrc)
            return True
        setattr(dtls, _DTLS_TX_BYTES, getattr(dtls, _DTLS_TX_BYTES) + len(data))
        setattr(dtls, _DTLS_TX_PACKETS, getattr(dtls, _DTLS_TX_PACKETS) + 1)
        setattr(sender, _SENDER + "ntp_timestamp", ntp_time)
        setattr(sender, _SENDER + "rtp_timestamp", packet.timestamp)
        setattr(
            sender, _SENDER + "octet_count", getattr(sender, _SENDER + "octet_count") + len(payload)
        )
        setattr(sender, _SENDER + "packet_count", getattr(sender, _SENDER + "packet_count") + 1)
        return True
