"""Media formats on an adapter's WebSocket (websocket-adapter.md §5, extensions.md E1, E3).

Cloudflare's format, and Sluice's default, is s16le PCM at 48 kHz, 2 channels, 20 ms per
Packet, one protobuf `Packet` per message: `CLOUDFLARE_PCM`. Sluice's extensions add
μ-law, Opus, other rates and channel counts, and raw framing (no `Packet`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Framing = Literal["packet", "raw"]
AudioCodec = Literal["pcm", "mulaw", "opus"]

OPUS_CLOCK_RATE = 48_000  # Opus timestamps are in 48 kHz RTP units whatever the content
VIDEO_CLOCK_RATE = 90_000


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """The audio of one adapter, as it travels on the WebSocket.

    Attributes:
        codec: `pcm` (signed 16-bit little-endian, interleaved), `mulaw` (G.711 μ-law,
            one byte a sample) or `opus` (one Opus packet per message).
        sample_rate: samples per second per channel (Opus: 48000).
        channels: 1 or 2.
        frame_ms: audio per egress Packet (pcm, mulaw).
        framing: `packet` (protobuf `Packet`) or `raw` (the media bytes alone).
    """

    codec: AudioCodec = "pcm"
    sample_rate: int = 48_000
    channels: int = 2
    frame_ms: int = 20
    framing: Framing = "packet"

    @property
    def clock_rate(self) -> int:
        """Units of `timestamp` per second."""
        return OPUS_CLOCK_RATE if self.codec == "opus" else self.sample_rate

    @property
    def bytes_per_sample(self) -> int:
        """Bytes of one sample of every channel (pcm: 2 per channel, μ-law: 1).

        Raises:
            ValueError: Opus has no fixed size.
        """
        if self.codec == "opus":
            raise ValueError("Opus packets have no fixed bytes per sample")
        return (2 if self.codec == "pcm" else 1) * self.channels

    @property
    def bytes_per_second(self) -> int:
        return self.bytes_per_sample * self.sample_rate

    def duration(self, payload: bytes) -> int:
        """Clock units (`timestamp` steps) of audio in one payload; 0 if unreadable."""
        if self.codec == "opus":
            return opus_samples(payload)
        return len(payload) // self.bytes_per_sample


@dataclass(frozen=True, slots=True)
class VideoFormat:
    """JPEG snapshots of a video track (`outputCodec: "jpeg"`).

    Attributes:
        fps: snapshots per second (E5; Cloudflare sends about 1).
        framing: `packet` or `raw`.
    """

    codec: Literal["jpeg"] = "jpeg"
    fps: float = 1.0
    framing: Framing = "packet"

    @property
    def clock_rate(self) -> int:
        return VIDEO_CLOCK_RATE


MediaFormat = AudioFormat | VideoFormat

CLOUDFLARE_PCM = AudioFormat()
CLOUDFLARE_JPEG = VideoFormat()


def format_from_event(fields: dict[str, Any]) -> MediaFormat:
    """The `format` object of a `start` event (E4) as a format.

    Raises:
        ValueError: a codec or value this SDK does not know.
    """
    codec = fields.get("codec")
    framing = fields.get("framing", "packet")
    if framing not in ("packet", "raw"):
        raise ValueError(f"unknown framing {framing!r}")
    if codec == "jpeg":
        return VideoFormat(fps=float(fields.get("fps", 1.0)), framing=framing)
    if codec not in ("pcm", "mulaw", "opus"):
        raise ValueError(f"unknown codec {codec!r}")
    default_rate, default_channels = (8_000, 1) if codec == "mulaw" else (48_000, 2)
    return AudioFormat(
        codec=codec,
        sample_rate=int(fields.get("sampleRate") or default_rate),
        channels=int(fields.get("channels") or default_channels),
        frame_ms=int(fields.get("frameMs") or 20),
        framing=framing,
    )


# RFC 6716 §3.1: the TOC byte's configuration gives the frame size, in 48 kHz samples.
_SILK = (480, 960, 1920, 2880)
_HYBRID = (480, 960)
_CELT = (120, 240, 480, 960)


def opus_samples(packet: bytes) -> int:
    """Samples (at 48 kHz) in one Opus packet, from its TOC byte; 0 if it is malformed."""
    if not packet:
        return 0
    config, code = packet[0] >> 3, packet[0] & 3
    if config < 12:
        frame = _SILK[config % 4]
    elif config < 16:
        frame = _HYBRID[config % 2]
    else:
        frame = _CELT[config % 4]
    if code == 0:
        frames = 1
    elif code in (1, 2):
        frames = 2
    elif len(packet) < 2:
        return 0
    else:
        frames = packet[1] & 0x3F
    return frame * frames


def _mulaw_to_linear(byte: int) -> int:
    # G.711: complement, then sign, 3-bit exponent, 4-bit mantissa with a bias of 0x84.
    byte = ~byte & 0xFF
    magnitude = (((byte & 0x0F) << 3) + 0x84) << ((byte & 0x70) >> 4)
    return (0x84 - magnitude) if byte & 0x80 else (magnitude - 0x84)


MULAW_TO_PCM16 = tuple(_mulaw_to_linear(b) for b in range(256))
_MULAW_TABLE = b"".join(v.to_bytes(2, "little", signed=True) for v in MULAW_TO_PCM16)


def mulaw_to_pcm16(data: bytes) -> bytes:
    """G.711 μ-law bytes → s16le PCM, same channel layout."""
    table = _MULAW_TABLE
    return b"".join(table[2 * b : 2 * b + 2] for b in data)
