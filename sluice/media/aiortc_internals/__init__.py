"""Every reliance on aiortc internals lives in this package; its tests pin it.

`tests/sfu/test_aiortc_internals.py` fails first on an aiortc upgrade that moved a seam.
One module per seam, each explaining what it relies on:

- `receive`: `tap_receiver` takes encoded frames off an `RTCRtpReceiver` in place of its
  jitter buffer (nothing decoded); `receive_counts` reads its statistics synchronously;
  `FrameDecoder` decodes tapped frames where a consumer needs samples.
- `direct_receive`: RTP handed from SRTP straight to a tapped receiver's tap.
- `direct_send`: `send_directly`, a sender's encoded packets sent by its own task
  past aiortc's per-packet layers.
- `send`: `on_keyframe_request`, `restrict_codecs` and `renumber_like_source` for
  senders fed pre-encoded packets (`sluice.media.packet_track`).
- `datagrams`: media datagrams offered to a handler before aioice parses them (the
  seam under `eager_receive` and `divert`).
- `header_extensions`: `without_abs_send_time`, no bandwidth estimation for a receiver
  whose consumer never adapts a bitrate.
- `eager_receive`: `receive_eagerly`, media datagrams handled in the socket's callback
  instead of one task later.
- `divert`: `divert_rtp`, RTP datagrams off aiortc's receive path (load generators).
- `codec_registry`: `register_codecs`, VP9 and H265 passthrough and Opus in-band FEC,
  called once by each process's entry point.
- `ice_ports`: `pin_ice_ports`, ICE host sockets inside `SLUICE_ICE_UDP_PORTS`.
- `guard`: the private names the others read and `SeamBroken`, raised when they moved.

Import from here: the names below are the package's interface.
"""

from sluice.media.aiortc_internals.codec_registry import register_codecs
from sluice.media.aiortc_internals.direct_send import send_directly
from sluice.media.aiortc_internals.divert import DatagramSink, divert_rtp
from sluice.media.aiortc_internals.eager_receive import receive_eagerly
from sluice.media.aiortc_internals.guard import SeamBroken
from sluice.media.aiortc_internals.header_extensions import without_abs_send_time
from sluice.media.aiortc_internals.ice_ports import pin_ice_ports
from sluice.media.aiortc_internals.receive import (
    DEFAULT_VIDEO_HOLD_FRAMES,
    FrameDecoder,
    ReceiveCounts,
    ReceiverTap,
    receive_counts,
    tap_receiver,
)
from sluice.media.aiortc_internals.send import (
    on_keyframe_request,
    renumber_like_source,
    restrict_codecs,
)

__all__ = [
    "DEFAULT_VIDEO_HOLD_FRAMES",
    "DatagramSink",
    "FrameDecoder",
    "ReceiveCounts",
    "ReceiverTap",
    "SeamBroken",
    "divert_rtp",
    "on_keyframe_request",
    "pin_ice_ports",
    "receive_counts",
    "receive_eagerly",
    "register_codecs",
    "renumber_like_source",
    "restrict_codecs",
    "send_directly",
    "tap_receiver",
    "without_abs_send_time",
]
