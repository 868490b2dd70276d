"""Egress audio in the endpoint's format: rate, channels, s16le or μ-law, framing.

The Opus decoder decodes to the adapter's channels (libopus mixes a stereo source to the
mean of its channels) and to `decode_rate(fmt)`, one chunk per Opus frame.
`AudioConverter` turns that stream into Packets of `frame_ms` in the format an adapter
asked for (E1):

- a rate below 48 kHz goes through one streaming soxr resampler for the adapter's life,
  so its filter state carries across frames (no clicks at frame edges); it takes and
  gives int16, rounding with TPDF dither and clipping in C. libopus could decode to 8 or
  16 kHz itself, but its decoder cuts well below the new Nyquist frequency there (nothing
  above ~3 kHz at 8 kHz) and leaks just above it (~30 dB down, where the contract asks
  for 40): `python -m bench.resampler`, row OPUS. So the decoder decodes to 24 kHz (for 8
  and 16 kHz out; mono at 24 kHz costs less than stereo at 48) or 48 kHz, and soxr
  band-limits from there;
- samples go out as s16le, or μ-law coded (`g711`);
- Packets are cut at exactly `frame_ms`, whatever the Opus frame size, and stamped in
  samples at the output rate from 0. A jump in the source's RTP timestamps (a real gap)
  moves every later Packet's timestamp on by as much, from the first Packet that starts
  after it.

The wire's default format (pcm, 48 kHz, stereo, 20 ms) never comes here: the pipeline
sends the decoder's bytes as they are, one Packet per Opus frame, as it always did.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import soxr

from worker.protocol.g711 import mulaw_encode
from worker.protocol.pcm import SAMPLE_RATE

AudioCodec = Literal["pcm", "mulaw"]
SAMPLE_RATES = (8000, 16000, 24000, 48000)
FRAME_MS = (20, 40, 60, 100)
DEFAULT_RATE: dict[str, int] = {"pcm": 48_000, "mulaw": 8000}
DEFAULT_CHANNELS: dict[str, int] = {"pcm": 2, "mulaw": 1}
DEFAULT_FRAME_MS = 20
# soxr's "medium quality": flat to 0.45 x the output rate and about 90 dB down or more
# past its Nyquist frequency, and it holds back the least audio of the qualities that
# are: on average 21 ms at 16 and 24 kHz and 42 ms at 8 kHz, where "high quality" holds
# 23 and 87 ms. "Low quality" is 20 dB down at 0.45 x already; "quick" is cubic
# interpolation (`python -m bench.resampler`).
RESAMPLER_QUALITY = "MQ"
_UINT32 = 1 << 32


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """What one egress audio adapter sends (validated by the API, E1)."""

    codec: AudioCodec = "pcm"
    sample_rate: int = 48_000
    channels: int = 2
    frame_ms: int = DEFAULT_FRAME_MS

    @classmethod
    def from_options(cls, codec: str, options: Mapping[str, Any]) -> AudioFormat:
        """The format of an adapter record: its codec and its settings (defaults filled in).

        Raises:
            ValueError: not an audio codec this module makes.
        """
        if codec not in DEFAULT_RATE:
            raise ValueError(f"no PCM conversion to {codec!r}")
        return cls(
            codec="mulaw" if codec == "mulaw" else "pcm",
            sample_rate=int(options.get("sampleRate", DEFAULT_RATE[codec])),
            channels=int(options.get("channels", DEFAULT_CHANNELS[codec])),
            frame_ms=int(options.get("frameMs", DEFAULT_FRAME_MS)),
        )

    @property
    def is_wire_default(self) -> bool:
        """Cloudflare's format: the decoder's own bytes, with nothing to convert."""
        return self == AudioFormat()

    @property
    def frame_samples(self) -> int:
        """Samples per channel in one Packet (16 kHz, 20 ms: 320)."""
        return self.sample_rate * self.frame_ms // 1000

    @property
    def frame_bytes(self) -> int:
        """Payload bytes of one Packet (16 kHz mono pcm, 100 ms: 3 200)."""
        width = 2 if self.codec == "pcm" else 1
        return self.frame_samples * self.channels * width

    def describe(self) -> dict[str, Any]:
        """The `format` of an E4 `start` event (framing added by the caller)."""
        return {
            "codec": self.codec,
            "sampleRate": self.sample_rate,
            "channels": self.channels,
            "frameMs": self.frame_ms,
        }


def decode_rate(fmt: AudioFormat) -> int:
    """The rate the Opus decoder decodes to for `fmt` (soxr takes it from there)."""
    return 48_000 if fmt.sample_rate > 16_000 else 24_000


class AudioConverter:
    """Turns decoded audio (`decode_rate(fmt)`, `fmt`'s channels) into `fmt` Packets.

    Args:
        fmt: the output format.
    """

    def __init__(self, fmt: AudioFormat) -> None:
        self.format = fmt
        self._in_rate = decode_rate(fmt)
        self._resampler = (
            soxr.ResampleStream(
                self._in_rate, fmt.sample_rate, fmt.channels, "int16", RESAMPLER_QUALITY
            )
            if fmt.sample_rate != self._in_rate
            else None
        )
        self._mulaw = fmt.codec == "mulaw"
        self._channels = fmt.channels
        self._rtp_per_sample = SAMPLE_RATE // self._in_rate  # 1 or 2
        self._frame_bytes, self._frame_samples = fmt.frame_bytes, fmt.frame_samples
        self._pending = bytearray()  # encoded output not yet cut into a Packet
        self._cut = 0  # output samples (per channel) cut into Packets, gaps not counted
        self._fed = 0  # RTP units (48 kHz) fed, gaps not counted
        self._expected_rtp: int | None = None  # of the next decoded chunk, if contiguous
        self._jumps: deque[tuple[int, int]] = deque()  # (output sample it is at, size)
        self._offset = 0  # source gaps before the next Packet, in output samples

    def feed(self, pcm: bytes, rtp_timestamp: int) -> list[tuple[int, bytes]]:
        """Converts one decoded chunk; returns the Packets it completed, in order.

        Args:
            pcm: s16le at `decode_rate(format)` in the format's channels, as
                `OpusPcmDecoder` gives it.
            rtp_timestamp: the source frame's RTP timestamp (48 kHz units).

        Returns:
            `(timestamp, payload)` per Packet: `timestamp` in output samples from 0
            (not wrapped), `payload` exactly `format.frame_bytes` long.
        """
        samples = len(pcm) // (2 * self._channels)
        self._note_gap(rtp_timestamp, samples * self._rtp_per_sample)
        if self._resampler is None and not self._mulaw:
            self._pending += pcm  # 48 kHz pcm in other Packet sizes, or mono
            return self._cut_packets()
        audio: npt.NDArray[np.int16] = np.frombuffer(pcm, dtype="<i2")
        if self._resampler is not None:
            audio = self._resampler.resample_chunk(audio.reshape(-1, self._channels))
        self._pending += mulaw_encode(audio) if self._mulaw else audio.tobytes()
        return self._cut_packets()

    def _note_gap(self, rtp_timestamp: int, samples: int) -> None:
        end = (rtp_timestamp + samples) % _UINT32
        if self._expected_rtp is not None:
            gap = (rtp_timestamp - self._expected_rtp) % _UINT32
            if gap >= _UINT32 // 2:
                # Behind (a repeat, or late): no gap, and the expectation never goes
                # back, or the next regular frame would look like one.
                ahead = (end - self._expected_rtp) % _UINT32
                end = end if 0 < ahead < _UINT32 // 2 else self._expected_rtp
            elif gap > 0:
                rate = self.format.sample_rate
                at = self._fed * rate // SAMPLE_RATE
                self._jumps.append((at, gap * rate // SAMPLE_RATE))
        self._expected_rtp = end
        self._fed += samples

    def _cut_packets(self) -> list[tuple[int, bytes]]:
        size, step = self._frame_bytes, self._frame_samples
        count = len(self._pending) // size
        if count == 0:
            return []
        packets = []
        for i in range(count):
            # A gap counts from the first Packet that starts at or after it: the one it
            # falls inside holds audio from before it, and keeps its regular step.
            while self._jumps and self._jumps[0][0] <= self._cut:
                self._offset += self._jumps.popleft()[1]
            payload = bytes(self._pending[i * size : (i + 1) * size])
            packets.append((self._cut + self._offset, payload))
            self._cut += step
        del self._pending[: count * size]
        return packets
