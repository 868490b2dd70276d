"""An ingest endpoint's audio in its own format, turned into the wire's 48 kHz stereo PCM.

Sluice extensions (extensions.md E1): an endpoint may send s16le PCM or G.711 μ-law, at
8 to 48 kHz, mono or stereo. The track is always 48 kHz stereo Opus, so the playout
buffer, its 60 s bound and the pacing all stay in 20 ms frames of 48 kHz stereo s16le,
and the buffer is measured in time whatever the input format.

    intake = Intake(InputFormat("mulaw", 8000, 1))
    for frame in intake.feed(packet.payload):   # empty payload: end of segment
        playout.push(frame)

48 kHz stereo PCM (Cloudflare's format) goes straight to the reassembler, as before.
Other rates go through one streaming resampler (libsoxr) per adapter: band-limited, its
filter state kept across messages, so message boundaries never click. A sample split
across messages is carried over, as a frame is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt
import soxr

from worker.protocol.pcm import BYTES_PER_SAMPLE, SAMPLE_RATE, BytesLike, PcmReassembler

PCM, MULAW = "pcm", "mulaw"
DEFAULTS: Final = {PCM: (SAMPLE_RATE, 2), MULAW: (8_000, 1)}  # codec → (sampleRate, channels)
# libsoxr's "medium" recipe: 16-bit precision (the output is s16 anyway), images above
# the input's Nyquist frequency more than 100 dB down, and at 8 kHz a quarter of the
# delay of its 20-bit "HQ" recipe (36 ms instead of 137 ms held back inside the filter).
RESAMPLER_QUALITY = "MQ"


def _mulaw_table() -> npt.NDArray[np.int16]:
    """Every μ-law byte's linear value, scaled to s16 (G.711's 14-bit values times 4).

    The classic decoder (as in Sun's g711.c): the byte is sent inverted; sign, a 3-bit
    segment and a 4-bit step; magnitude `((2 * step + 33) << segment) - 33`.
    """
    inverted = ~np.arange(256, dtype=np.int32) & 0xFF
    segment = (inverted >> 4) & 0x07
    step = inverted & 0x0F
    magnitude = (((step << 3) + 0x84) << segment) - 0x84
    return np.where(inverted & 0x80, -magnitude, magnitude).astype(np.int16)


MULAW_TABLE: Final = _mulaw_table()
MULAW_TABLE.setflags(write=False)


def mulaw_decode(data: BytesLike) -> npt.NDArray[np.int16]:
    """G.711 μ-law bytes → s16 samples, one per byte.

    Args:
        data: μ-law bytes.
    """
    return MULAW_TABLE[np.frombuffer(data, dtype=np.uint8)]


@dataclass(frozen=True, slots=True)
class InputFormat:
    """What an ingest endpoint sends: codec, sample rate (Hz), channels.

    Raises:
        ValueError: an unknown codec, a rate that is not positive, or not 1 or 2 channels.
    """

    codec: str = PCM
    sample_rate: int = SAMPLE_RATE
    channels: int = 2

    def __post_init__(self) -> None:
        if self.codec not in DEFAULTS:
            raise ValueError(f"unknown input codec {self.codec!r}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample rate must be positive, got {self.sample_rate}")
        if self.channels not in (1, 2):
            raise ValueError(f"expected 1 or 2 channels, got {self.channels}")

    @classmethod
    def of(cls, codec: str, options: dict[str, Any]) -> InputFormat:
        """The format an adapter record names: its codec and the settings in effect.

        A record written before these settings existed has none: the codec's defaults.

        Args:
            codec: the record's codec (`inputCodec`).
            options: the record's settings (`sampleRate`, `channels`).
        """
        rate, channels = DEFAULTS.get(codec, DEFAULTS[PCM])
        return cls(
            codec, int(options.get("sampleRate", rate)), int(options.get("channels", channels))
        )

    @property
    def native(self) -> bool:
        """Whether this is the wire's own format, which needs no conversion."""
        return self.codec == PCM and self.sample_rate == SAMPLE_RATE and self.channels == 2

    @property
    def sample_bytes(self) -> int:
        """Bytes of one sample of every channel (4 for s16 stereo, 1 for μ-law mono)."""
        return (2 if self.codec == PCM else 1) * self.channels

    @property
    def bytes_per_s(self) -> int:
        """Bytes of one second of audio in this format."""
        return self.sample_rate * self.sample_bytes


class InputConverter:
    """A stream of one format's bytes → the wire's 48 kHz stereo s16le bytes.

    Args:
        fmt: the endpoint's format.
    """

    def __init__(self, fmt: InputFormat) -> None:
        self.format = fmt
        self._carry = b""  # the start of a sample split across messages
        self._resampler = (
            None
            if fmt.sample_rate == SAMPLE_RATE
            # float32, not int16: libsoxr dithers int16 output, which would make the
            # result depend on where the endpoint cut its messages.
            else soxr.ResampleStream(
                fmt.sample_rate,
                SAMPLE_RATE,
                fmt.channels,
                dtype="float32",
                quality=RESAMPLER_QUALITY,
            )
        )
        self._primed = False  # the resampler holds input since its last flush

    def convert(self, payload: BytesLike) -> bytes:
        """The wire bytes one message's payload makes (the resampler may hold some back).

        Args:
            payload: audio bytes of `format`, split anywhere.
        """
        data = self._carry + bytes(payload) if self._carry else payload
        whole = len(data) - len(data) % self.format.sample_bytes
        self._carry = bytes(data[whole:])
        if not whole:
            return b""
        samples = self._decode(memoryview(data)[:whole])
        if self._resampler is None:
            return _to_wire(samples)
        self._primed = True
        return _to_wire(_to_s16(self._resampler.resample_chunk(samples.astype(np.float32))))

    def flush(self) -> bytes:
        """Ends the stream (end of segment): what the resampler still held.

        A sample split by the end is dropped (a fraction of a millisecond). The next
        input starts a fresh stream.
        """
        self._carry = b""
        if self._resampler is None or not self._primed:
            return b""
        shape = (0, 2) if self.format.channels == 2 else (0,)
        tail = self._resampler.resample_chunk(np.zeros(shape, np.float32), last=True)
        self._resampler.clear()
        self._primed = False
        return _to_wire(_to_s16(tail))

    def reset(self) -> float:
        """Drops whatever is held (a clear); returns its seconds. The next input starts a
        fresh stream."""
        held = 0.0
        self._carry = b""
        if self._resampler is not None and self._primed:
            held = self._resampler.delay() / SAMPLE_RATE  # output samples it still owes
            self._resampler.clear()
        self._primed = False
        return held

    def _decode(self, data: memoryview) -> npt.NDArray[np.int16]:
        if self.format.codec == MULAW:
            samples = mulaw_decode(data)
        else:
            samples = np.frombuffer(data, dtype="<i2").astype(np.int16, copy=False)
        return samples.reshape(-1, 2) if self.format.channels == 2 else samples


def _to_s16(samples: npt.NDArray[np.float32]) -> npt.NDArray[np.int16]:
    """Resampled s16-scaled floats back to s16: rounded, and clipped (a band-limited
    full-scale square wave overshoots)."""
    return np.clip(np.rint(samples), -32_768, 32_767).astype(np.int16)


def _to_wire(samples: npt.NDArray[np.int16]) -> bytes:
    """Interleaved stereo s16le; mono goes to both channels."""
    if samples.ndim == 1:
        samples = np.repeat(samples, 2)
    # '<i2' pins little-endian on any host; no copy when it already is.
    return samples.astype("<i2", copy=False).tobytes()


class Intake:
    """An endpoint's payloads in `fmt` → whole 20 ms frames of the wire's PCM.

    The wire's own format goes straight to the reassembler (nothing is converted);
    any other through an `InputConverter` first.

    Args:
        fmt: the endpoint's format.
    """

    def __init__(self, fmt: InputFormat) -> None:
        self.format = fmt
        self._converter = None if fmt.native else InputConverter(fmt)
        self._reassembler = PcmReassembler()

    def feed(self, payload: BytesLike) -> list[bytes]:
        """The frames one payload completes, in order; an empty one ends the segment.

        Args:
            payload: audio bytes of `format`, split anywhere; empty: end of segment.
        """
        if self._converter is None:
            return self._reassembler.feed(payload)
        if not payload:
            return self.end_segment()
        pcm = self._converter.convert(payload)
        return self._reassembler.feed(pcm) if pcm else []

    def end_segment(self) -> list[bytes]:
        """Everything held, as frames, the last padded with silence (end of segment,
        a mark, the endpoint closing)."""
        frames = []
        if self._converter is not None and (tail := self._converter.flush()):
            frames = self._reassembler.feed(tail)
        if (last := self._reassembler.flush()) is not None:
            frames.append(last)
        return frames

    def discard(self) -> float:
        """Drops everything held (a clear): the partial frame, and what the resampler
        still owed. Returns how many seconds of audio that was."""
        held = self._converter.reset() if self._converter is not None else 0.0
        return held + self._reassembler.discard() / (BYTES_PER_SAMPLE * SAMPLE_RATE)
