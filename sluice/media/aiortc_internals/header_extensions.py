"""RTP header extensions a receiving section negotiates: `without_abs_send_time`.

aiortc offers and accepts `abs-send-time` on every video section. With it, the sender
stamps each packet, and the receiver runs each one through a remote bitrate estimator
(`aiortc.rate`) and sends REMB feedback. That feedback matters to a sender that adapts
its encoder to it, such as a browser publishing to the SFU. It does not matter where
Sluice receives to forward or to snapshot: the SFU forwards what it is sent at the rate
it came and never acts on a subscriber's REMB, and a pipeline's tap has no encoder to
steer. There the estimate is pure cost, on every video packet, on both sides.

aiortc makes every offer from its full extension list (`createOffer` resets each
transceiver's), so the extension is left out of the description this peer sends, which
is what the other end agrees to: the answer to such an offer leaves it out too, and a
sender stamps only what was agreed. aiortc feeds the estimator only packets that carry
the extension (pinned in `tests/sfu/test_aiortc_internals.py`). A transceiver's section
is found by its private `_get_mline_index()`, set when the description was made.
"""

from __future__ import annotations

from collections.abc import Iterable

from aiortc import RTCRtpTransceiver, RTCSessionDescription, sdp

from sluice.media.aiortc_internals.guard import SeamBroken

ABS_SEND_TIME_URI = "http://www.webrtc.org/experiments/rtp-hdrext/abs-send-time"


def without_abs_send_time(
    description: RTCSessionDescription, transceivers: Iterable[RTCRtpTransceiver]
) -> RTCSessionDescription:
    """`description` (an offer or answer this peer just made) with `abs-send-time` left
    out of the sections of `transceivers`; set it as the local description in place of
    the original.

    Raises:
        SeamBroken: transceivers no longer know their section this way.
    """
    parsed = sdp.SessionDescription.parse(description.sdp)
    for transceiver in transceivers:
        mline_index = getattr(transceiver, "_get_mline_index", None)
        if not callable(mline_index):
            raise SeamBroken("RTCRtpTransceiver has no _get_mline_index()")
        index = mline_index()
        if index is None or index >= len(parsed.media):
            continue  # not in this description (stopped, or not negotiated yet)
        rtp = parsed.media[index].rtp
        rtp.headerExtensions = [e for e in rtp.headerExtensions if e.uri != ABS_SEND_TIME_URI]
    return RTCSessionDescription(sdp=str(parsed), type=description.type)
