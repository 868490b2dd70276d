"""VP9 and H265, which aiortc lacks, carried without transcoding.

What aiortc needs to negotiate, receive and send a codec, written against its duck types
and without importing it (`sluice.media.aiortc_internals.register_codecs` plugs these in):

- a `PassthroughCodec` per codec: SDP name and fmtp, when two fmtp lines name the same
  format, the RTP depayloader and frame assembler from `sluice.media.rtp`;
- `PassthroughEncoder`, whose `pack()` turns one pre-encoded frame (an `av.Packet`, as
  `sluice.media.packet_track.PacketTrack` yields) into RTP payloads and whose `encode()` refuses:
  the SFU forwards, and a client sending raw frames must pick VP8 or H264;
- `PyAvDecoder`, for clients and `FrameDecoder` (the SFU taps every receiver and so
  never decodes).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import av
from av.packet import Packet
from av.video.codeccontext import VideoCodecContext

from sluice.media.frames import PayloadAssembler
from sluice.media.rtp import h265, vp9

VIDEO_CLOCK = 90_000  # RFC 9628 and RFC 7798 both fix the RTP clock at 90 kHz


class PassthroughEncoder:
    """aiortc's `Encoder` for a forwarded codec: packs pre-encoded frames, never encodes.

    Args:
        name: the codec's SDP name, for messages.
        packetize: one frame in, its RTP payloads out; raises `ValueError` if it cannot.
    """

    def __init__(self, name: str, packetize: Callable[[bytes], list[bytes]]) -> None:
        self.name = name
        self._packetize = packetize
        self.frames_refused = 0  # frames the packetizer could not cut (sent as nothing)

    def encode(self, frame: Any, force_keyframe: bool = False) -> tuple[list[bytes], int]:
        """Refuses: this codec is only ever forwarded.

        Raises:
            NotImplementedError: always.
        """
        raise NotImplementedError(
            f"{self.name} is forwarded, not encoded: send pre-encoded av.Packet frames"
        )

    def pack(self, packet: Packet[Any]) -> tuple[list[bytes], int]:
        """The RTP payloads of one pre-encoded frame and its timestamp at 90 kHz.

        A frame the packetizer refuses yields no payloads (aiortc then sends nothing):
        raising here would end the sender for good.
        """
        timestamp = _timestamp(packet)
        try:
            return self._packetize(bytes(packet)), timestamp
        except ValueError:
            self.frames_refused += 1
            return [], timestamp


class PyAvDecoder:
    """aiortc's `Decoder` on FFmpeg: whole encoded frames (`.data`, `.timestamp`) in.

    Args:
        ffmpeg_name: FFmpeg's decoder ("vp9", "hevc").
    """

    def __init__(self, ffmpeg_name: str) -> None:
        context = av.CodecContext.create(ffmpeg_name, "r")
        assert isinstance(context, VideoCodecContext)
        self._context = context

    def decode(self, encoded_frame: Any) -> list[Any]:
        packet = av.Packet(encoded_frame.data)
        packet.pts = encoded_frame.timestamp
        packet.time_base = Fraction(1, VIDEO_CLOCK)
        return list(self._context.decode(packet))


@dataclass(frozen=True, slots=True)
class PassthroughCodec:
    """One codec the SFU forwards but aiortc does not know.

    Attributes:
        name: as in SDP ("VP9", "H265").
        parameters: the fmtp it offers.
        profile_key: the fmtp parameter that must match for two entries to be one format.
        default_profile: its value when absent.
        ffmpeg_decoder: FFmpeg's decoder name.
        depayload: one RTP payload to the bytes a decoder takes.
        payload_error: what `depayload` and the assembler raise for malformed payloads.
        new_encoder: a `PassthroughEncoder` per sender.
        new_assembler: a frame assembler per received stream.
    """

    name: str
    parameters: Mapping[str, str]
    profile_key: str
    default_profile: str
    ffmpeg_decoder: str
    depayload: Callable[[bytes], bytes]
    payload_error: type[Exception]
    new_encoder: Callable[[], PassthroughEncoder]
    new_assembler: Callable[[], PayloadAssembler]

    @property
    def mime_type(self) -> str:
        return f"video/{self.name}"

    def same_format(self, a: Mapping[str, object], b: Mapping[str, object]) -> bool:
        """Whether two fmtp parameter sets describe one format (profiles must agree)."""
        key, default = self.profile_key, self.default_profile
        return str(a.get(key, default)) == str(b.get(key, default))


def _vp9_encoder() -> PassthroughEncoder:
    # RFC 9628: a sender should start at a random picture ID.
    packetizer = vp9.Vp9Packetizer(picture_id=secrets.randbelow(vp9.PICTURE_ID_MOD))
    return PassthroughEncoder("VP9", lambda frame: packetizer.packetize(frame))


def _h265_encoder() -> PassthroughEncoder:
    return PassthroughEncoder("H265", lambda unit: h265.packetize(unit))


VP9 = PassthroughCodec(
    name="VP9",
    parameters={"profile-id": "0"},  # 8-bit 4:2:0, what every VP9 decoder takes
    profile_key="profile-id",
    default_profile="0",
    ffmpeg_decoder="vp9",
    depayload=vp9.depayload,
    payload_error=vp9.Vp9PayloadError,
    new_encoder=_vp9_encoder,
    new_assembler=vp9.Vp9FrameAssembler,
)
H265 = PassthroughCodec(
    name="H265",
    # Main profile, main tier, level 3.1 (as aiortc's H264 42e01f), one RTP stream: the
    # parameters libwebrtc writes for H265, so a browser's offer finds them familiar.
    parameters={"level-id": "93", "profile-id": "1", "tier-flag": "0", "tx-mode": "SRST"},
    profile_key="profile-id",
    default_profile="1",
    ffmpeg_decoder="hevc",
    depayload=h265.depayload,
    payload_error=h265.H265PayloadError,
    new_encoder=_h265_encoder,
    new_assembler=h265.H265FrameAssembler,
)
PASSTHROUGH_CODECS = (VP9, H265)
_BY_NAME = {codec.name: codec for codec in PASSTHROUGH_CODECS}


def find(name: str) -> PassthroughCodec | None:
    """The forwarded codec called `name` in SDP (any case), if it is one."""
    return _BY_NAME.get(name.upper())


def _timestamp(packet: Packet[Any]) -> int:
    pts = packet.pts or 0
    time_base = packet.time_base
    if time_base is None:
        return int(pts)  # already in RTP clock units
    return int(pts * Fraction(time_base) * VIDEO_CLOCK)
