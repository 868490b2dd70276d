"""Load generation: `divert_rtp` takes a receiver's connection's RTP and RTCP datagrams off
aiortc's receive path (aioice's private protocol list), for benchmark subscribers that
only time packet arrivals.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiortc import RTCRtpReceiver

from sluice.media.aiortc_internals.datagrams import ice_protocols, take_media
from sluice.media.aiortc_internals.guard import SeamBroken

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
    protocols = ice_protocols(receiver.transport)
    if not protocols:
        raise SeamBroken("the ICE connection has no datagram protocols yet")

    def handle(data: bytes) -> bool:
        sink(data, time.monotonic())
        return True

    for protocol in protocols:
        take_media(protocol, handle)
