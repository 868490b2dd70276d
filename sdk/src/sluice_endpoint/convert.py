"""Audio handed to a sender, made into the adapter's format.

Bytes are taken as s16le PCM (or μ-law for a μ-law adapter); numpy arrays of int16 or
float (in [-1, 1]) as samples, shape (samples, channels) or flat. Channel counts are
converted here (mono duplicated to both channels, stereo averaged to mono). Another
sample rate needs a band-limited resampler: with the `resample` extra (soxr), a
`Resampler` streams through it, keeping its filter state between calls so chunk edges
make no clicks.
"""

from __future__ import annotations

import sys
from array import array
from typing import Any

from sluice_endpoint.errors import FormatError
from sluice_endpoint.formats import AudioFormat


def _int16(data: bytes) -> array[int]:
    samples = array("h")
    samples.frombytes(data)
    if sys.byteorder == "big":
        samples.byteswap()
    return samples


def _to_bytes(samples: array[int]) -> bytes:
    if sys.byteorder == "big":
        samples = array("h", samples)
        samples.byteswap()
    return samples.tobytes()


def remix(pcm: bytes, channels_in: int, channels_out: int) -> bytes:
    """s16le PCM from 1 or 2 channels to 1 or 2 channels.

    Raises:
        FormatError: a channel count other than 1 or 2, or a partial sample.
    """
    if channels_in not in (1, 2) or channels_out not in (1, 2):
        raise FormatError(f"channels must be 1 or 2, got {channels_in} → {channels_out}")
    if channels_in == channels_out:
        return pcm  # as is: Sluice carries a split sample over to the next message
    if len(pcm) % (2 * channels_in):
        raise FormatError(f"{len(pcm)} bytes are not whole samples of {channels_in} channels")
    samples = _int16(pcm)
    if channels_in == 1:
        stereo = array("h", bytes(4 * len(samples)))
        stereo[0::2] = samples
        stereo[1::2] = samples
        return _to_bytes(stereo)
    left, right = samples[0::2], samples[1::2]
    return _to_bytes(array("h", ((a + b) >> 1 for a, b in zip(left, right, strict=True))))


def array_to_pcm(audio: Any, channels: int) -> bytes:
    """A numpy array of int16 or float samples → s16le bytes, interleaved.

    Raises:
        FormatError: a shape that does not fit `channels`, or another dtype.
    """
    import numpy as np

    samples = np.asarray(audio)
    if samples.ndim == 2 and samples.shape[1] != channels:
        raise FormatError(f"an array of {samples.shape[1]} channels sent as {channels}")
    if samples.ndim > 2:
        raise FormatError(f"audio arrays are (samples, channels), got shape {samples.shape}")
    if samples.dtype.kind == "f":
        samples = np.clip(np.round(samples * 32768.0), -32768, 32767)
    elif samples.dtype != np.int16:
        raise FormatError(f"audio arrays are int16 or float, got {samples.dtype}")
    return bytes(samples.astype("<i2").tobytes())


class Resampler:
    """Streaming band-limited resampling of s16le PCM (soxr).

    Args:
        rate_in: the input's sample rate.
        rate_out: the adapter's sample rate.
        channels: channels of the PCM (already the adapter's count).

    Raises:
        ImportError: the `resample` extra (numpy, soxr) is not installed.
    """

    def __init__(self, rate_in: int, rate_out: int, channels: int) -> None:
        try:
            import numpy
            import soxr
        except ImportError:
            raise ImportError(
                f"sending {rate_in} Hz audio to a {rate_out} Hz adapter needs a resampler: "
                "pip install 'sluice-endpoint[resample]', or create the adapter with "
                f'"sampleRate": {rate_in} (Sluice extension E1)'
            ) from None
        self.rate_in, self.channels = rate_in, channels
        self._np = numpy
        self._stream = soxr.ResampleStream(rate_in, rate_out, channels, dtype="int16")

    def process(self, pcm: bytes, last: bool = False) -> bytes:
        """Resamples the next block; `last` also flushes what the filter holds back."""
        samples = self._np.frombuffer(pcm, dtype="<i2").reshape(-1, self.channels)
        out = self._stream.resample_chunk(samples, last=last)
        return bytes(self._np.asarray(out, dtype="<i2").tobytes())


def to_format(
    audio: Any, fmt: AudioFormat, sample_rate: int | None, channels: int | None
) -> tuple[bytes, int, int]:
    """Audio as handed to `send` → (s16le or μ-law bytes, their sample rate, channels).

    Neither rate nor channels are converted here (see `Resampler`, `remix`): resampling
    goes first, on the fewest channels.

    Raises:
        FormatError: audio that cannot be made to fit (μ-law at another rate or layout,
            an array for a μ-law adapter, partial samples).
    """
    rate = sample_rate or fmt.sample_rate
    layout = channels or fmt.channels
    if fmt.codec == "mulaw":
        if not isinstance(audio, bytes | bytearray | memoryview):
            raise FormatError("a μ-law adapter takes μ-law bytes")
        if (rate, layout) != (fmt.sample_rate, fmt.channels):
            raise FormatError(
                f"μ-law is sent as is: {rate} Hz, {layout} channels do not fit the adapter's "
                f"{fmt.sample_rate} Hz, {fmt.channels} channels"
            )
        return bytes(audio), rate, layout
    if fmt.codec != "pcm":
        raise FormatError(f"ingest takes pcm or mulaw, not {fmt.codec}")
    if isinstance(audio, bytes | bytearray | memoryview):
        pcm = bytes(audio)
    else:
        pcm = array_to_pcm(audio, layout)
    return pcm, rate, layout
