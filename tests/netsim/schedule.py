"""What an impaired network does to each datagram: drop it, or let it go after a delay.

Pure: no sockets, `now` passed in. A `Schedule` draws exactly two random numbers per
datagram from its own seeded generator, whatever the verdict, so the n-th datagram of a
direction gets the same fate on every run with the same seed (outages, being periods of
time, fall on the datagrams that happen to arrive in them).
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Impairment:
    """One direction's impairment.

    Attributes:
        loss: probability that a datagram is dropped (0..1).
        delay_ms: one-way delay added to every datagram.
        jitter_ms: each datagram's delay varies uniformly by up to this either way.
        reorder: whether a datagram may overtake an earlier one (jitter then reorders,
            as on a real network); False keeps the order, so jitter only delays.
        outage_every_s: periodic burst outages, one every this many seconds (0: none).
        outage_ms: each outage drops everything for this long.
        outage_offset_s: when the first outage starts, from the schedule's start.
    """

    loss: float = 0.0
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    reorder: bool = True
    outage_every_s: float = 0.0
    outage_ms: float = 0.0
    outage_offset_s: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be within 0..1, got {self.loss}")
        if self.delay_ms < 0 or self.jitter_ms < 0 or self.outage_ms < 0:
            raise ValueError("delays and outages cannot be negative")
        if self.jitter_ms > self.delay_ms:
            raise ValueError("jitter_ms cannot exceed delay_ms (a datagram cannot arrive early)")
        if self.outage_every_s < 0 or self.outage_offset_s < 0:
            raise ValueError("outage_every_s and outage_offset_s cannot be negative")
        if self.outage_every_s and self.outage_ms >= self.outage_every_s * 1000:
            raise ValueError("an outage must be shorter than its period")

    def in_outage(self, elapsed_s: float) -> bool:
        """Whether `elapsed_s` after the start falls in a burst outage."""
        if not self.outage_every_s or not self.outage_ms or elapsed_s < self.outage_offset_s:
            return False
        into = (elapsed_s - self.outage_offset_s) % self.outage_every_s
        return into < self.outage_ms / 1000

    def outages(self, until_s: float) -> list[tuple[float, float]]:
        """The burst outages that begin before `until_s`: (start, end) after the start."""
        if not self.outage_every_s or not self.outage_ms:
            return []
        starts = itertools.count(self.outage_offset_s, self.outage_every_s)
        return [
            (start, start + self.outage_ms / 1000)
            for start in itertools.takewhile(lambda s: s < until_s, starts)
        ]


CLEAR = Impairment()


@dataclass(frozen=True, slots=True)
class Verdict:
    """A datagram's fate: dropped, or sent on at `release_at` (the clock `now` came from)."""

    drop: bool
    release_at: float


@dataclass(slots=True)
class ScheduleStats:
    datagrams: int = 0
    lost: int = 0  # dropped at random
    outage: int = 0  # dropped in a burst outage
    reordered: int = 0  # sent on before a datagram that came earlier

    @property
    def dropped(self) -> int:
        return self.lost + self.outage


class Schedule:
    """Decides, datagram by datagram, what one direction of the network does.

    Args:
        impairment: what to do; `impairment` may be replaced at any time.
        seed: the run's seed; each direction should get its own (e.g. seed and seed + 1).
        start: the clock reading outages count from.
    """

    def __init__(self, impairment: Impairment, seed: int, start: float) -> None:
        self.impairment = impairment
        self.stats = ScheduleStats()
        self._random = random.Random(seed)
        self.start = start  # the clock reading outages count from
        self._last_release = start  # of the latest datagram let through

    def decide(self, now: float) -> Verdict:
        """The fate of the datagram that arrives at `now` (call once per datagram)."""
        imp, stats = self.impairment, self.stats
        stats.datagrams += 1
        lost_draw, jitter_draw = self._random.random(), self._random.random()
        if imp.in_outage(now - self.start):
            stats.outage += 1
            return Verdict(True, now)
        if lost_draw < imp.loss:
            stats.lost += 1
            return Verdict(True, now)
        delay_s = (imp.delay_ms + (2 * jitter_draw - 1) * imp.jitter_ms) / 1000
        release = now + delay_s
        if not imp.reorder:
            release = max(release, self._last_release)
        elif release < self._last_release:
            stats.reordered += 1
        self._last_release = max(self._last_release, release)
        return Verdict(False, release)
