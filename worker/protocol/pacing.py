"""A 20 ms tick from a monotonic clock, without drift.

Tick `n` is due at `start + n * interval_s`, computed from the anchor every time rather
than as `last + interval_s`: a late wake-up delays one tick, never the ones after it, so
sleep jitter does not accumulate (over ten minutes, 1 ms of jitter per tick would add up
to 30 s with the naive form).

    pacer = Pacer(loop.time())
    while True:
        await asyncio.sleep(pacer.next_delay(loop.time()))
        tick = pacer.advance(loop.time())
        send(playout.pop(), pts=pacer.pts(tick))
"""

from __future__ import annotations

import math

from worker.protocol.pcm import FRAME_DURATION_S, FRAME_SAMPLES

DEFAULT_MAX_LAG_S = 0.200  # behind by more than this: skip ahead instead of bursting
RTP_TIMESTAMP_MOD = 1 << 32


class Pacer:
    """Tells a pull loop when each tick is due and which tick it is producing.

    Falling slightly behind (a busy loop, a slow encode) is caught up by returning a zero
    delay until the schedule is met again; those ticks count as `late_ticks` when they run
    after the following tick was already due. Falling far behind (the process was paused,
    by a debugger, a GC storm or a stopped container) would mean bursting hundreds of
    frames; instead the tick index jumps to the current slot of the same grid and the
    ticks jumped over count as `skipped_ticks`. The grid keeps its phase, so tick `n`
    stays due at `start + n * interval_s` and its media timestamp keeps matching the
    clock: the receiver sees a timestamp gap for a real gap.

    Args:
        start: monotonic time (seconds) at which tick 0 is due.
        interval_s: seconds between ticks.
        max_lag_s: how late the next tick may be before the pacer skips ahead.
        samples_per_tick: media clock units per tick (960 at 48 kHz per 20 ms).

    Raises:
        ValueError: `interval_s` not positive, `max_lag_s` negative, or
            `samples_per_tick` negative.
    """

    def __init__(
        self,
        start: float,
        *,
        interval_s: float = FRAME_DURATION_S,
        max_lag_s: float = DEFAULT_MAX_LAG_S,
        samples_per_tick: int = FRAME_SAMPLES,
    ) -> None:
        if not interval_s > 0:
            raise ValueError(f"interval_s must be positive, got {interval_s}")
        if max_lag_s < 0:
            raise ValueError(f"max_lag_s must not be negative, got {max_lag_s}")
        if samples_per_tick < 0:
            raise ValueError(f"samples_per_tick must not be negative, got {samples_per_tick}")
        self.start = start
        self.interval_s = interval_s
        self.max_lag_s = max_lag_s
        self.samples_per_tick = samples_per_tick
        self._next = 0
        self.late_ticks = 0
        self.skipped_ticks = 0
        self.reanchors = 0

    @property
    def next_tick(self) -> int:
        """Index of the tick `advance` will return next."""
        return self._next

    @property
    def clock_rate(self) -> int:
        """Media clock units per second implied by the tick size (48 000 by default)."""
        return round(self.samples_per_tick / self.interval_s)

    def deadline(self, tick: int) -> float:
        """Monotonic time at which `tick` is due: `start + tick * interval_s`.

        Args:
            tick: any tick index.
        """
        return self.start + tick * self.interval_s

    def next_delay(self, now: float) -> float:
        """Seconds to sleep before the next tick is due; 0.0 when it already is.

        Args:
            now: the monotonic clock.
        """
        return max(0.0, self.deadline(self._next) - now)

    def advance(self, now: float) -> int:
        """Takes the next tick and returns its index.

        Call it when about to produce the tick's frame, normally after sleeping
        `next_delay(now)`. Called early, it still returns the next tick (producing a
        frame a little early is harmless); called far too late, it skips ahead first.

        Args:
            now: the monotonic clock.
        """
        lag = now - self.deadline(self._next)
        if lag > self.max_lag_s:
            # The slot `now` falls into; never backwards, whatever the float rounding.
            current = max(self._next, math.floor((now - self.start) / self.interval_s))
            self.skipped_ticks += current - self._next
            self.reanchors += 1
            self._next = current
        elif lag >= self.interval_s:
            self.late_ticks += 1
        tick = self._next
        self._next += 1
        return tick

    def pts(self, tick: int) -> int:
        """Media timestamp of `tick`, unwrapped: `tick * samples_per_tick`.

        Args:
            tick: a tick index.
        """
        return tick * self.samples_per_tick

    def rtp_timestamp(self, tick: int, origin: int = 0) -> int:
        """32-bit RTP timestamp of `tick`, with a random `origin` as RFC 3550 wants.

        Args:
            tick: a tick index.
            origin: the stream's initial timestamp.
        """
        return (origin + tick * self.samples_per_tick) % RTP_TIMESTAMP_MOD
