"""The datagram seam: media datagrams taken off an ICE connection's sockets before aioice.

aioice hands every datagram of a socket to its `StunProtocol.datagram_received`, which
parses it as STUN first; aiortc's ICE transport keeps the connection at `_connection`,
and aioice keeps its sockets' protocols at `Connection._protocols`. RFC 7983 tells media
apart by its first byte: 128-191 is RTP or RTCP, the rest STUN or DTLS.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiortc import RTCDtlsTransport

from sluice.media.aiortc_internals.guard import SeamBroken

MediaHandler = Callable[[bytes], bool]  # True: taken; False: aioice's way after all


def ice_protocols(dtls: RTCDtlsTransport) -> list[Any]:
    """The datagram protocols of the ICE connection under `dtls`.

    Raises:
        SeamBroken: aiortc or aioice no longer keep them where this looks.
    """
    connection = getattr(dtls.transport, "_connection", None)
    protocols = getattr(connection, "_protocols", None)
    if not isinstance(protocols, list):
        raise SeamBroken("the ICE connection has no list of datagram protocols")
    return protocols


def take_media(protocol: Any, handle: MediaHandler) -> None:
    """Offers each RTP and RTCP datagram of `protocol`'s socket to `handle` first;
    what it declines, and every STUN or DTLS datagram, goes to aioice as before."""
    original = protocol.datagram_received

    def datagram_received(data: Any, addr: Any) -> None:
        if not (data and 127 < data[0] < 192 and handle(data)):
            original(data, addr)

    protocol.datagram_received = datagram_received
