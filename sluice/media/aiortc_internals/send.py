"""The send side of forwarding: keyframe requests, codec narrowing, renumbering.

Send side (`sluice.media.packet_track` feeds senders pre-encoded packets): a subscriber's
PLI/FIR ends in the sender's private `_send_keyframe()`, which `on_keyframe_request` replaces.
`restrict_codecs` narrows a transceiver's negotiated codecs to the forwarded one. A sender
numbers its packets itself, one by one, in a local variable of its private `_run_rtp`;
`renumber_like_source` rewrites the number in each serialized RTP packet on its way to
the DTLS transport's private `_send_rtp` (before SRTP), so that a forwarded audio stream
keeps its source's gaps and order (`sluice.media.renumber`).
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from aiortc import RTCRtpSender, RTCRtpTransceiver
from aiortc.codecs import is_rtx
from aiortc.rtp import is_rtcp

from sluice.media.aiortc_internals.guard import SeamBroken
from sluice.media.renumber import SequenceMap

RTP_HEADER_BYTES = 12


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
