"""Opus → s16le PCM at the adapter's rate and channels, straight from libopus.

libopus decodes to any of 8, 12, 16, 24 and 48 kHz, mono or stereo, holding nothing
back; a mono output is the mean of a stereo stream's channels. Egress adapters that want
mono or a lower rate have it decode to their channels and to 24 kHz, which costs less
than 48 kHz stereo (see `worker.protocol.audio_format` for why not lower).

Concealing a lost frame needs libopus's own calls: `opus_decode` with no packet
(packet-loss concealment, PLC) and with the next packet and `decode_fec=1` (in-band
FEC). PyAV cannot make either: FFmpeg's libopus decoder has no FEC option (only
`apply_phase_inv`), and an empty packet ends its stream for good rather than conceal.
So this decodes with libopus's own calls (`worker.pipelines.libopus`).
"""

from __future__ import annotations

import ctypes
import weakref

from worker.pipelines.libopus import OPUS_OK, OpusUnavailable, libopus

SAMPLE_RATE = 48_000  # Opus's RTP clock, whatever rate it is decoded at
CHANNELS = 2
DECODE_RATES = (8_000, 12_000, 16_000, 24_000, 48_000)  # what libopus decodes to
MAX_FRAME_SAMPLES = 5_760  # 120 ms at 48 kHz, the longest Opus packet


class OpusPcmDecoder:
    """Decodes Opus packets to interleaved s16le bytes, and conceals lost ones.

    Args:
        sample_rate: the output rate, one of `DECODE_RATES`.
        channels: 1 (the mean of a stereo source's channels) or 2 (a mono source comes
            out duplicated on both).

    Raises:
        OpusUnavailable: no libopus could be loaded.
        ValueError: a rate or channel count libopus does not decode to.
    """

    def __init__(self, sample_rate: int = SAMPLE_RATE, channels: int = CHANNELS) -> None:
        if sample_rate not in DECODE_RATES or channels not in (1, 2):
            raise ValueError(f"libopus decodes to none of {sample_rate} Hz, {channels} ch")
        lib = libopus()
        error = ctypes.c_int(0)
        state = lib.opus_decoder_create(sample_rate, channels, ctypes.byref(error))
        if error.value != OPUS_OK or not state:
            raise OpusUnavailable(f"opus_decoder_create failed ({error.value})")
        self._lib = lib
        self._state = state
        self._rate = sample_rate
        self._bytes_per_sample = 2 * channels
        self._max_samples = MAX_FRAME_SAMPLES * sample_rate // SAMPLE_RATE
        self._pcm = (ctypes.c_int16 * (self._max_samples * channels))()
        weakref.finalize(self, lib.opus_decoder_destroy, state)

    def decode(self, data: bytes) -> list[bytes]:
        """PCM of one Opus packet (20 ms at 48 kHz stereo: 3 840 bytes); [] if it does
        not decode."""
        if not data:
            return []  # an empty payload would mean "lost" to libopus
        pcm = self._run(data, self._max_samples, fec=False)
        return [pcm] if pcm else []

    def conceal(self, samples: int, fec: bytes | None = None) -> bytes:
        """`samples` (per channel) of made-up audio for a lost frame.

        Args:
            samples: the lost frame's length in RTP units, 48 kHz (a multiple of 2.5 ms).
            fec: the packet that follows the lost frame, if it carries in-band FEC: the
                frame is rebuilt from it (decode it normally afterwards). Without it,
                libopus extrapolates from what it decoded last (PLC).
        """
        wanted = min(samples, MAX_FRAME_SAMPLES) * self._rate // SAMPLE_RATE
        pcm = self._run(fec, wanted, fec=fec is not None)
        return pcm or bytes(wanted * self._bytes_per_sample)

    def _run(self, data: bytes | None, frame_samples: int, *, fec: bool) -> bytes:
        length = len(data) if data else 0
        decoded = self._lib.opus_decode(
            self._state, data, length, self._pcm, frame_samples, int(fec)
        )
        if decoded <= 0:
            return b""
        return ctypes.string_at(self._pcm, decoded * self._bytes_per_sample)
