"""Figures of one path of `bench.impaired`: what its receiver got, judged; pure.

Audio: a list of (arrival time, 48 kHz media timestamp, 20 ms of s16le stereo) per
frame, whoever delivered it (Sluice's endpoint or a bare aiortc receiver). Video: a list
of (arrival time, 90 kHz media timestamp, whether it is one flat colour, which) per
picture.
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.integration.video import COLOURS, colour_index
from tests.netsim.measure import FRAME, RATE, AudioFigures

FREQS = (440.0, 660.0)
WARM_UP = 25  # frames past the start-up, as in tests/integration/test_impaired_egress.py
LATENCY_WINDOW_S = 2.0  # latency is compared between the first and the last 2 s
LATENCY_PERCENTILE = 10
SOLID_TOLERANCE = 30.0  # a picture of the test track is one colour: p99 distance to it
VIDEO_CLOCK = 90_000

AudioFrame = tuple[float, int, bytes]
Picture = tuple[float, int, bool, int]  # arrival, timestamp, one flat colour, which


def unwrapped(timestamps: list[int]) -> list[int]:
    """RTP timestamps made monotonic across the 2^32 wrap (a random origin may wrap)."""
    out = timestamps[:1]
    for a, b in itertools.pairwise(timestamps):
        out.append(out[-1] + ((b - a + 2**31) % 2**32 - 2**31))
    return out


def latency_growth_ms(arrivals: list[float], timestamps: list[int], clock: int) -> float:
    """How much later media arrives in the last `LATENCY_WINDOW_S` than in the first.

    Each frame's offset is its arrival minus its media time; the path's latency in a
    window is the 10th percentile of its offsets (jitter and a busy machine only ever add
    delay, so the low end is the path itself). A receiver that falls behind for good (a
    buffer that filled during an outage and never drained) shows as growth.
    """
    offsets = np.array(arrivals) - np.array(timestamps, dtype=np.float64) / clock
    times = np.array(arrivals)
    first = offsets[times <= times[0] + LATENCY_WINDOW_S]
    last = offsets[times >= times[-1] - LATENCY_WINDOW_S]
    growth = np.percentile(last, LATENCY_PERCENTILE) - np.percentile(first, LATENCY_PERCENTILE)
    return round(float(growth) * 1000, 1)


@dataclass(frozen=True, slots=True)
class AudioRow:
    """One audio path under one impairment (`concealed_pct` None: the path cannot tell)."""

    frames: int
    per_second: float  # frames per second of arrival time (a starved sender lowers it)
    spliced: int  # timestamp steps over 20 ms and up to 100 ms: audio cut, not concealed
    gaps: int  # steps over 100 ms: a hole too long to conceal (an outage)
    backwards: int  # steps of zero or less: the timeline stalled or went back
    missing_pct: float  # share of the media timeline with no frame at all
    concealed_pct: float | None  # share of the frames that are concealment
    purity_left: float  # % of the 440 Hz channel's energy within 20 Hz of it
    purity_right: float  # the same for 660 Hz
    latency_growth_ms: float

    @classmethod
    def of(cls, got: list[AudioFrame], concealed: int | None = None) -> AudioRow:
        got = got[WARM_UP:]
        if len(got) < 2:
            raise ValueError(f"too few audio frames to judge: {len(got)}")
        arrivals = [a for a, _, _ in got]
        timestamps = unwrapped([t for _, t, _ in got])
        fig = AudioFigures.of(timestamps, [p for _, _, p in got], FREQS)
        span_frames = (timestamps[-1] - timestamps[0]) // FRAME + 1
        return cls(
            frames=len(got),
            per_second=round((len(got) - 1) / (arrivals[-1] - arrivals[0]), 1),
            spliced=fig.small_jumps,
            gaps=fig.large_jumps,
            backwards=fig.backwards,
            missing_pct=round(100 * max(0, span_frames - len(got)) / span_frames, 1),
            concealed_pct=None if concealed is None else round(100 * concealed / len(got), 1),
            purity_left=round(100 * fig.purity_left, 1),
            purity_right=round(100 * fig.purity_right, 1),
            latency_growth_ms=latency_growth_ms(arrivals, timestamps, RATE),
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def is_solid(image: npt.NDArray[np.uint8]) -> bool:
    """Whether a picture is one flat colour, as every picture the test track sends is."""
    pixels = image.reshape(-1, 3).astype(np.float64)
    distance = np.linalg.norm(pixels - np.median(pixels, axis=0), axis=1)
    return float(np.percentile(distance, 99)) <= SOLID_TOLERANCE


def judged(arrival: float, timestamp: int, image: npt.NDArray[np.uint8]) -> Picture:
    """What the figures keep of a picture (the pixels would fill memory at 30 fps)."""
    return arrival, timestamp, is_solid(image), colour_index(image)


def off_phase(times_s: list[float], indices: list[int]) -> list[bool]:
    """For each picture, whether the best-fitting source phase fails to explain its colour.

    The source shows colour (t // 1) % 4 at its own time t; a receiver's media clock has
    an unknown origin, so every phase is tried and the one explaining most is kept.
    """
    if not times_s:
        return []
    times, got = np.array(times_s), np.array(indices)
    misses = [
        ((times + phase) // 1).astype(np.int64) % len(COLOURS) != got
        for phase in np.arange(0, len(COLOURS), 0.01)
    ]
    return [bool(m) for m in min(misses, key=lambda m: int(m.sum()))]


@dataclass(frozen=True, slots=True)
class VideoRow:
    """One picture path under one impairment (JPEGs from Sluice, decoded frames bare)."""

    pictures: int
    per_second: float
    max_interval_s: float
    broken: int  # not one flat colour: decoded from a damaged reference, or not decodable
    wrong: int  # a flat colour the source did not show at that media time
    recovery_s: list[float]  # per outage: from its end to the first correct picture

    @classmethod
    def of(
        cls, got: list[Picture], undecodable: int, outages: list[tuple[float, float]]
    ) -> VideoRow:
        if len(got) < 2:
            raise ValueError(f"too few pictures to judge: {len(got)}")
        arrivals = [a for a, _, _, _ in got]
        times = [t / VIDEO_CLOCK for t in unwrapped([t for _, t, _, _ in got])]
        solid = [ok for _, _, ok, _ in got]
        kept = [(t, p[3]) for t, p in zip(times, got, strict=True) if p[2]]
        wrong = iter(off_phase([t for t, _ in kept], [i for _, i in kept]))
        correct = [a for a, ok in zip(arrivals, solid, strict=True) if ok and not next(wrong)]
        recovery = []
        for _, end in outages:
            after = [a - end for a in correct if a > end]
            if after and end < arrivals[-1]:
                recovery.append(round(after[0], 2))
        return cls(
            pictures=len(got),
            per_second=round((len(got) - 1) / (arrivals[-1] - arrivals[0]), 2),
            max_interval_s=round(float(np.diff(arrivals).max()), 2),
            broken=undecodable + solid.count(False),
            wrong=len(kept) - len(correct),
            recovery_s=recovery,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)
