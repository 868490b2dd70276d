"""The eager receive: SRTP datagrams handled in the socket's callback, not one task later.

aiortc takes three steps per media datagram: aioice's `StunProtocol.datagram_received`
first parses it as STUN (an exception per RTP packet), then puts it on its connection's
`asyncio.Queue`; `RTCDtlsTransport.__run` wakes for it (a task switch per packet),
stamps the arrival time through `datetime`, unprotects it and awaits the RTP or RTCP
handler, coroutines that in practice never wait. Measured with cProfile in an egress
pipeline, those hops cost as much as the RTP parsing and the receiver together.

`receive_eagerly` does `RTCDtlsTransport._recv_next`'s SRTP branch in the datagram
callback itself: the same counters (`getStats()` reads them), the same unprotect and the
same handlers, run to completion on the spot (`sluice.tasks.run_eagerly`; one that waits
continues in a task), so statistics, RTCP reports, NACK and PLI behave as before; RTP
for a tapped receiver goes straight to its tap (`direct_receive`). STUN
and DTLS datagrams, and media that arrives before the DTLS handshake is done, take
aiortc's own path. RFC 7983 tells them apart by the first byte.
"""

from __future__ import annotations

import functools
import time

import pylibsrtp
import structlog
from aiortc import RTCDtlsTransport, RTCPeerConnection
from aiortc.clock import NTP_EPOCH
from aiortc.rtcdtlstransport import State
from aiortc.rtp import is_rtcp

from sluice.media.aiortc_internals.datagrams import ice_protocols, take_media
from sluice.media.aiortc_internals.direct_receive import handle_rtp
from sluice.media.aiortc_internals.guard import (
    RX_BYTES_ATTR,
    RX_PACKETS_ATTR,
    SeamBroken,
    count_one,
)
from sluice.tasks import run_eagerly

log = structlog.get_logger("sluice.media")

_PATCHED = "_sluice_eager"  # set on a protocol whose datagrams are handled here
# aiortc stamps arrival in milliseconds since the NTP epoch (`aiortc.clock.current_ms`).
_NTP_OFFSET_S = -NTP_EPOCH.timestamp()


def receive_eagerly(pc: RTCPeerConnection) -> None:
    """Handles `pc`'s media datagrams as they arrive (see the module docstring).

    Call after each `setLocalDescription` (which gathers the ICE sockets); sockets
    already handled are left as they are.

    Raises:
        SeamBroken: aiortc or aioice no longer keep what this relies on where it looks.
    """
    transports = {id(t.receiver.transport): t.receiver.transport for t in pc.getTransceivers()}
    transports.update({id(t.sender.transport): t.sender.transport for t in pc.getTransceivers()})
    for dtls in transports.values():
        if dtls is not None:
            _handle_eagerly(dtls)


def _handle_eagerly(dtls: RTCDtlsTransport) -> None:
    protocols = ice_protocols(dtls)
    if not hasattr(dtls, "_rx_srtp") or not hasattr(dtls, RX_PACKETS_ATTR):
        raise SeamBroken("RTCDtlsTransport has no SRTP session or receive counters")
    for protocol in protocols:
        if not getattr(protocol, _PATCHED, False):
            take_media(protocol, functools.partial(_media_received, dtls))
            setattr(protocol, _PATCHED, True)


def _media_received(dtls: RTCDtlsTransport, data: bytes) -> bool:
    """`RTCDtlsTransport._recv_next` for one SRTP or SRTCP datagram; False (aiortc's
    way) until the handshake ends, as there is no key before."""
    if dtls._rx_srtp is None:
        return False
    if dtls._state is not State.CONNECTED:
        return True  # closing or closed: its receive task would no longer read either
    count_one(dtls, RX_BYTES_ATTR, RX_PACKETS_ATTR, len(data))
    arrival_time_ms = int((time.time() + _NTP_OFFSET_S) * 1000)
    try:
        if is_rtcp(data):
            handling = dtls._handle_rtcp_data(dtls._rx_srtp.unprotect_rtcp(data))
        else:
            plain = dtls._rx_srtp.unprotect(data)
            if handle_rtp(dtls, plain):
                return True
            handling = dtls._handle_rtp_data(plain, arrival_time_ms=arrival_time_ms)
    except pylibsrtp.Error:
        return True  # aiortc drops it too (a replay, or not for this session)
    run_eagerly(handling, log=log)
    return True
