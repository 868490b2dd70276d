"""The PCM of the wire: s16le, 48 kHz, stereo interleaved (L, R), in 20 ms frames.

Ingest cuts the endpoint's byte stream into frames with `PcmReassembler`; egress turns
decoded frames into wire bytes with `to_stereo_s16le`.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

SAMPLE_RATE = 48_000  # Hz, also the Opus RTP clock
CHANNELS = 2
SAMPLE_WIDTH = 2  # bytes per sample of one channel (s16le)
BYTES_PER_SAMPLE = CHANNELS * SAMPLE_WIDTH  # one sample of every channel: 4 bytes
FRAME_DURATION_S = 0.020
FRAME_SAMPLES = 960  # per channel: 20 ms at 48 kHz
FRAME_BYTES = FRAME_SAMPLES * BYTES_PER_SAMPLE  # 3 840
SILENCE = bytes(FRAME_BYTES)  # s16 zero is digital silence

BytesLike = bytes | bytearray | memoryview


def frames_for(duration_s: float) -> int:
    """Whole 20 ms frames needed to hold `duration_s` of audio (60 s is 3 000).

    Args:
        duration_s: seconds.
    """
    # round() first: 60 / 0.02 is 2999.9999999999995 in floats.
    return math.ceil(round(duration_s / FRAME_DURATION_S, 6))


class PcmReassembler:
    """Cuts a continuous PCM byte stream into whole 20 ms frames.

    Payloads are one stream: a sample or a frame may be split across messages at any
    byte, so the remainder is carried over to the next payload, never dropped.

    An empty payload is the end-of-segment marker: the partial frame then pending is
    flushed, padded with silence (zero bytes) up to `FRAME_BYTES`, so the last words of an
    utterance are played instead of waiting for audio that will not come. The padding
    also completes a sample split by the marker; the next segment starts on a fresh
    frame boundary.
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self.bytes_in = 0  # payload bytes fed, padding excluded
        self.padded_bytes = 0  # silence added by flushes

    @property
    def pending_bytes(self) -> int:
        """Bytes carried over, waiting for the rest of their frame (< `FRAME_BYTES`)."""
        return len(self._pending)

    def feed(self, payload: BytesLike) -> list[bytes]:
        """Adds one message's payload; returns the frames it completed, in order.

        Args:
            payload: the `Packet` payload; empty means end of segment (see `flush`).
        """
        if not payload:
            frame = self.flush()
            return [] if frame is None else [frame]
        self.bytes_in += len(payload)
        pending = self._pending
        pending += payload
        count = len(pending) // FRAME_BYTES
        if count == 0:
            return []
        # One slice per frame and one delete at the end: deleting per frame would move
        # the tail of the buffer once per frame.
        frames = [
            bytes(pending[i : i + FRAME_BYTES]) for i in range(0, count * FRAME_BYTES, FRAME_BYTES)
        ]
        del pending[: count * FRAME_BYTES]
        return frames

    def flush(self) -> bytes | None:
        """Ends the segment: the pending partial frame, padded with silence, or None.

        Used for the end-of-segment marker and when the endpoint closes, so buffered
        speech is never lost to a partial frame.
        """
        if not self._pending:
            return None
        padding = FRAME_BYTES - len(self._pending)
        frame = bytes(self._pending) + bytes(padding)
        self.padded_bytes += padding
        self._pending.clear()
        return frame

    def discard(self) -> int:
        """Drops the pending partial frame (a clear); returns how many bytes it held."""
        dropped = len(self._pending)
        self._pending.clear()
        return dropped


def to_stereo_s16le(samples: npt.NDArray[np.int16], channels: int) -> bytes:
    """Converts one decoded frame to the wire's interleaved stereo s16le bytes.

    Accepts the layouts PyAV's `AudioFrame.to_ndarray()` gives for s16: packed
    (`(1, n * channels)`, already interleaved), planar (`(channels, n)`), or a 1-D packed
    array. Mono is duplicated to both channels.

    Args:
        samples: int16 samples of one frame.
        channels: 1 (mono) or 2 (stereo).

    Raises:
        ValueError: not int16, not 1 or 2 channels, or a shape that fits neither layout.
    """
    if samples.dtype != np.int16:
        raise ValueError(f"expected int16 samples, got {samples.dtype}")
    if channels not in (1, 2):
        raise ValueError(f"expected 1 or 2 channels, got {channels}")
    if samples.ndim == 2 and samples.shape[0] == channels:
        # Planar (or mono, where packed and planar are the same): one row per channel.
        interleaved = samples.T.reshape(-1)
    elif samples.ndim == 1 or (samples.ndim == 2 and samples.shape[0] == 1):
        interleaved = samples.reshape(-1)
        if channels == 2 and interleaved.size % 2:
            raise ValueError(f"packed stereo needs an even sample count, got {interleaved.size}")
    else:
        raise ValueError(f"shape {samples.shape} is neither packed nor planar {channels}-channel")
    if channels == 1:
        interleaved = np.repeat(interleaved, 2)
    # '<i2' pins little-endian on any host; no copy when it already is.
    return interleaved.astype("<i2", copy=False).tobytes()
