"""VP9 and H.265 for SFU tests: encoded with PyAV, sent pre-encoded, decoded with PyAV."""

from __future__ import annotations

import fractions
from collections.abc import Iterable
from typing import Any

import av
import numpy as np
from aiortc import RTCRtpSender, RTCRtpTransceiver
from av.video.frame import PictureType

from sluice.media.rtp import h265
from tests.sfu.media import FPS, VIDEO_CLOCK, PacedTrack

SIZE = (320, 240)
FFMPEG_DECODERS = {"VP9": "vp9", "H265": "hevc"}


def new_encoder(codec: str, gop: int | None) -> Any:
    """A zero-latency encoder (one packet per picture); `gop` None: one keyframe only."""
    if codec == "VP9":
        ctx = av.CodecContext.create("libvpx-vp9", "w")
        ctx.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    else:
        ctx = av.CodecContext.create("libx265", "w")
        keyint = -1 if gop is None else gop  # x265: -1 is a single keyframe
        # repeat-headers: every IDR carries VPS/SPS/PPS, as WebRTC senders do, so a
        # subscriber starting at a later keyframe can decode; forced-idr: PLI makes an IDR.
        params = f"log-level=error:keyint={keyint}:min-keyint={max(keyint, 1)}:scenecut=0"
        ctx.options = {
            "preset": "ultrafast",
            "tune": "zerolatency",
            "forced-idr": "1",
            "x265-params": params + ":repeat-headers=1",
        }
    ctx.width, ctx.height = SIZE
    ctx.pix_fmt = "yuv420p"
    ctx.time_base = fractions.Fraction(1, FPS)
    ctx.bit_rate = 300_000
    ctx.gop_size = gop if gop is not None else 1_000_000
    return ctx


def picture(rgb: tuple[int, int, int], index: int) -> av.VideoFrame:
    """A solid colour with a small moving mark, so every frame is distinct."""
    width, height = SIZE
    img = np.zeros((height, width, 3), dtype=np.uint8)
    img[:, :] = rgb
    x = (index * 8) % (width - 16)
    img[:16, x : x + 16] = 255
    frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuv420p")
    frame.pts = index
    return frame


def encode_colour(codec: str, rgb: tuple[int, int, int], frames: int, gop: int) -> list[bytes]:
    """`frames` encoded pictures of a solid colour, a keyframe every `gop`.

    H.265 comes with 4-byte start codes throughout: RTP carries NAL units, not the start
    codes between them, so that is the one Annex-B form a receiver can give back.
    """
    ctx = new_encoder(codec, gop)
    out: list[bytes] = []
    for i in range(frames):
        out += [bytes(p) for p in ctx.encode(picture(rgb, i))]
    assert len(out) == frames, "zero-latency encoders give one packet per picture"
    if codec == "H265":
        out = [b"".join(h265.START_CODE + nal for nal in h265.split_annex_b(f)) for f in out]
    return out


class EncoderTrack(PacedTrack):
    """Encodes a colour live at 30 fps and yields `av.Packet`s; keyframes only on request.

    Wire `request_keyframe` to the sender with `sluice.media.aiortc_internals.on_keyframe_request`:
    a sender that packs pre-encoded frames has no encoder of its own to force.
    """

    kind = "video"

    def __init__(self, codec: str, rgb: tuple[int, int, int]) -> None:
        super().__init__()
        self._ctx = new_encoder(codec, None)
        self._rgb = rgb
        self._force = False
        self.keyframes = 0

    def request_keyframe(self) -> None:
        self._force = True

    async def recv(self) -> av.Packet:
        await self._wait_turn(FPS)
        frame = picture(self._rgb, self._n)
        if self._force:
            frame.pict_type = PictureType.I
            self._force = False
        encoded = list(self._ctx.encode(frame))
        self.keyframes += sum(1 for p in encoded if p.is_keyframe)
        packet = av.Packet(b"".join(bytes(p) for p in encoded))
        packet.pts = self._n * (VIDEO_CLOCK // FPS)
        packet.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        self._n += 1
        return packet


def prefer(transceiver: RTCRtpTransceiver, codec: str) -> None:
    """Offers only `codec` (and RTX) on a transceiver."""
    capabilities = RTCRtpSender.getCapabilities(transceiver.kind).codecs
    wanted = (f"video/{codec}".lower(), "video/rtx")
    transceiver.setCodecPreferences([c for c in capabilities if c.mimeType.lower() in wanted])


def decode_all(codec: str, frames: Iterable[bytes]) -> list[av.VideoFrame]:
    """Every picture PyAV's FFmpeg decoder makes of these encoded frames, in order."""
    ctx = av.CodecContext.create(FFMPEG_DECODERS[codec], "r")
    pictures: list[av.VideoFrame] = []
    for data in frames:
        pictures += ctx.decode(av.Packet(data))
    return pictures
