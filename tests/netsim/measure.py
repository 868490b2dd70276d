"""Figures of egress audio received under impairment: rate, jumps, spectral purity."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

RATE = 48_000
FRAME = 960  # samples per channel in 20 ms
CONCEAL_LIMIT = 4_800  # 100 ms: a longer gap may jump, a shorter one must be concealed


def purity(mono: npt.NDArray[np.float64], freq_hz: float, width_hz: float = 20.0) -> float:
    """Share of a signal's energy within `width_hz` of `freq_hz` (1.0: a clean tone).

    Every splice, click or distorted frame spreads energy across the spectrum.
    """
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono)))) ** 2
    freqs = np.fft.rfftfreq(len(mono), 1 / RATE)
    spectrum[freqs < 20] = 0  # DC and rumble say nothing of a splice
    near = np.abs(freqs - freq_hz) <= width_hz
    return float(spectrum[near].sum() / spectrum.sum())


@dataclass(frozen=True, slots=True)
class AudioFigures:
    """What an endpoint got: Packets per second of media, jumps, purity per channel."""

    packets: int
    per_second: float  # Packets per second of wire timestamp (50 when nothing is missing)
    small_jumps: int  # timestamp steps over 20 ms and up to 100 ms: audio spliced
    large_jumps: int  # over 100 ms: allowed, like a gap in the source
    backwards: int  # timestamp steps of zero or less: frames out of order
    purity_left: float
    purity_right: float

    @classmethod
    def of(
        cls, timestamps: list[int], payloads: list[bytes], freqs: tuple[float, float]
    ) -> AudioFigures:
        steps = [b - a for a, b in itertools.pairwise(timestamps)]
        span_s = (timestamps[-1] - timestamps[0] + FRAME) / RATE
        stereo = np.frombuffer(b"".join(payloads), dtype="<i2").reshape(-1, 2)
        left, right = (stereo[:, i].astype(np.float64) for i in (0, 1))
        return cls(
            packets=len(timestamps),
            per_second=len(timestamps) / span_s,
            small_jumps=sum(1 for s in steps if FRAME < s <= CONCEAL_LIMIT),
            large_jumps=sum(1 for s in steps if s > CONCEAL_LIMIT),
            backwards=sum(1 for s in steps if s <= 0),
            purity_left=purity(left, freqs[0]),
            purity_right=purity(right, freqs[1]),
        )

    def line(self) -> str:
        return (
            f"{self.packets} Packets, {self.per_second:.1f}/s, {self.small_jumps} jumps "
            f"<= 100 ms, {self.large_jumps} longer, {self.backwards} backwards, purity "
            f"{self.purity_left:.2%} / {self.purity_right:.2%}"
        )
