"""The version guard: what aiortc keeps where, and the error when an upgrade moved it.

Every module of this package checks the private shape it relies on before it patches
anything and raises `SeamBroken` otherwise; `tests/sfu/test_aiortc_internals.py` pins the
behaviour behind each seam.
"""

from __future__ import annotations

from typing import Any

from sluice.errors import MediaError

# Name-mangled attributes of RTCRtpReceiver the receive side reads or replaces.
JITTER_ATTR = "_RTCRtpReceiver__jitter_buffer"
CODECS_ATTR = "_RTCRtpReceiver__codecs"
STREAMS_ATTR = "_RTCRtpReceiver__remote_streams"  # SSRC → StreamStatistics
ACTIVE_ATTR = "_RTCRtpReceiver__active_ssrc"  # SSRC → when it was last heard
NACK_ATTR = "_RTCRtpReceiver__nack_generator"  # video only
ESTIMATOR_ATTR = "_RTCRtpReceiver__remote_bitrate_estimator"  # video only
# Name-mangled receive counters of RTCDtlsTransport (its `getStats()` transport figures).
RX_BYTES_ATTR = "_RTCDtlsTransport__rx_bytes"
RX_PACKETS_ATTR = "_RTCDtlsTransport__rx_packets"
# ... and its send counters, which `direct_send` adds to as `_send_rtp` does.
TX_BYTES_ATTR = "_RTCDtlsTransport__tx_bytes"
TX_PACKETS_ATTR = "_RTCDtlsTransport__tx_packets"
# RTCRtpSender's name-mangled attributes `direct_send` reads (the negotiated
# mid and header extension ids, the NACK history) and writes (what its RTCP sender
# reports and `getStats()` tell).
SENDER_PREFIX = "_RTCRtpSender__"
SENDER_ATTRS = (
    "mid",
    "rtp_header_extensions_map",
    "rtp_history",
    "ntp_timestamp",
    "rtp_timestamp",
    "octet_count",
    "packet_count",
)


def count_one(owner: Any, bytes_name: str, packets_name: str, size: int) -> None:
    """Adds one packet of `size` bytes to a pair of aiortc's private counters, as the
    code it stands in for would (`getStats()` and RTCP reports read them)."""
    setattr(owner, bytes_name, getattr(owner, bytes_name) + size)
    setattr(owner, packets_name, getattr(owner, packets_name) + 1)


class SeamBroken(MediaError):
    """aiortc no longer has the shape this package relies on (an upgrade changed it)."""
