"""Opus → the wire's PCM (s16le, 48 kHz, stereo interleaved), straight from libopus."""

from __future__ import annotations

from av import CodecContext, Packet

BYTES_PER_SAMPLE_STEREO = 4


class OpusPcmDecoder:
    """Decodes Opus frames to interleaved stereo s16le bytes, one chunk per frame.

    libopus decodes to the format we ask for, so no resampler or numpy conversion runs
    per frame; mono sources come out duplicated on both channels.
    """

    def __init__(self) -> None:
        self._codec = CodecContext.create("libopus", "r")
        self._codec.format = "s16"
        self._codec.layout = "stereo"
        self._codec.sample_rate = 48_000

    def decode(self, data: bytes) -> list[bytes]:
        """PCM of one Opus packet (20 ms gives 3 840 bytes); [] if it does not decode."""
        chunks = []
        for frame in self._codec.decode(Packet(data)):
            size = frame.samples * BYTES_PER_SAMPLE_STEREO
            # The plane may be padded past the samples; the wire carries exactly them.
            chunks.append(bytes(frame.planes[0])[:size])
        return chunks
