"""Egress reconnect parts: backoff, the reconnect window, the bounded backlogs.

When the endpoint connection is lost (or closed with any code but 1000), the pipeline
re-dials with a short backoff for up to a window (default 5 s), then closes the adapter
with `endpoint_unavailable`. Meanwhile the decode loop keeps producing: audio goes into
a bounded drop-oldest `Backlog`, video into `LatestOnly`. On reconnect the backlog is
flushed in order, then live resumes.

The same `Backlog` is the send queue while connected: a slow endpoint fills it, the
oldest messages are dropped and counted, so the decode loop never blocks on the socket
and memory stays bounded. `egress_session.EgressSession` puts these parts together.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Sized
from typing import Generic, TypeVar

DEFAULT_WINDOW_S = 5.0  # spec §7: re-dial for up to 5 s
DEFAULT_AUDIO_BACKLOG_S = DEFAULT_WINDOW_S  # as long as the window: no loss within it

M = TypeVar("M", bound=Sized)  # a queued message; its len() is its size in bytes


class Backoff:
    """Delays between re-dial attempts: `initial_s * factor**attempt`, capped.

    Defaults give 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, ... seconds.

    Args:
        initial_s: delay before the first attempt.
        factor: growth per attempt.
        max_s: cap on the nominal delay.
        jitter: maps a nominal delay to the one used, e.g.
            `lambda d: random.uniform(d / 2, d)`; injected to keep this pure and
            testable. Results below 0 are taken as 0.

    Raises:
        ValueError: a negative delay, or `factor` below 1.
    """

    def __init__(
        self,
        initial_s: float = 0.1,
        factor: float = 2.0,
        max_s: float = 1.0,
        jitter: Callable[[float], float] | None = None,
    ) -> None:
        if initial_s < 0 or max_s < 0:
            raise ValueError("backoff delays must not be negative")
        if factor < 1:
            raise ValueError(f"factor must be at least 1, got {factor}")
        self.initial_s = initial_s
        self.factor = factor
        self.max_s = max_s
        self.jitter = jitter

    def delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (0-based).

        Args:
            attempt: how many attempts were made before this one.
        """
        # The exponent is capped so a long outage cannot overflow the float.
        nominal = min(self.max_s, self.initial_s * self.factor ** min(attempt, 64))
        if self.jitter is None:
            return nominal
        return max(0.0, self.jitter(nominal))


class ReconnectWindow:
    """One outage: re-dial attempts from `lost_at` until `lost_at + window_s`.

    `next_delay(now)` paces the attempts until it gives up (None); `remaining(now)` is
    the bound for one dial (see `EgressSession.redial_delay` and `dial_timeout`).

    Every attempt is left at least `min_attempt_s` before the deadline, so the last one
    is not a dial with no time to connect; passing `remaining(now)` as the dial timeout
    keeps the whole outage within the window.

    Args:
        lost_at: monotonic time the connection was found lost.
        window_s: how long to keep trying, in seconds.
        backoff: delays between attempts; `Backoff()` by default.
        min_attempt_s: the least time an attempt gets before the deadline.

    Raises:
        ValueError: `window_s` or `min_attempt_s` is negative.
    """

    def __init__(
        self,
        lost_at: float,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        backoff: Backoff | None = None,
        min_attempt_s: float = 0.1,
    ) -> None:
        if window_s < 0 or min_attempt_s < 0:
            raise ValueError("window_s and min_attempt_s must not be negative")
        self.lost_at = lost_at
        self.deadline = lost_at + window_s
        self.backoff = backoff if backoff is not None else Backoff()
        self.min_attempt_s = min_attempt_s
        self.attempts = 0

    def remaining(self, now: float) -> float:
        """Seconds left in the window (0.0 once expired); the bound for one dial.

        Args:
            now: the monotonic clock.
        """
        return max(0.0, self.deadline - now)

    def next_delay(self, now: float) -> float | None:
        """Seconds to wait before the next attempt, which it counts; None to give up.

        Args:
            now: the monotonic clock, after the previous attempt failed.
        """
        # The latest an attempt may start; strictly before it, so that attempts failing
        # in no time still end with None instead of retrying at the same instant forever.
        room = self.deadline - self.min_attempt_s - now
        if room <= 0:
            return None
        delay = min(self.backoff.delay(self.attempts), room)
        self.attempts += 1
        return delay


class Backlog(Generic[M]):
    """A bounded drop-oldest FIFO of outgoing messages.

    Bounded by message count, by bytes, or both; appending past a bound drops the oldest
    messages, so what is kept is always the most recent stretch. A message larger than
    `max_bytes` on its own cannot be kept and is dropped at once. A message's size is its
    `len()` (bytes, or anything that tells its size in bytes that way). The invariant
    `appended == delivered + dropped + len(backlog)` always holds.

    Args:
        max_messages: most messages held; None for no count bound.
        max_bytes: most bytes held; None for no byte bound.

    Raises:
        ValueError: no bound at all, or a bound below 1.
    """

    def __init__(self, max_messages: int | None = None, max_bytes: int | None = None) -> None:
        if max_messages is None and max_bytes is None:
            raise ValueError("a backlog needs max_messages, max_bytes or both")
        if (max_messages is not None and max_messages < 1) or (
            max_bytes is not None and max_bytes < 1
        ):
            raise ValueError("backlog bounds must be at least 1")
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self._queue: deque[M] = deque()
        self._bytes = 0
        self.appended = 0
        self.delivered = 0
        self.dropped = 0

    @classmethod
    def for_audio(
        cls, window_s: float = DEFAULT_AUDIO_BACKLOG_S, frame_ms: float = 20
    ) -> Backlog[M]:
        """A backlog holding `window_s` of audio Packets (5 s of 20 ms: 250 messages).

        Args:
            window_s: seconds of audio to keep.
            frame_ms: the audio in one Packet (the shortest, when they vary).
        """
        # round() first: 60 / 0.02 is 2999.9999999999995 in floats.
        return cls(max_messages=max(1, math.ceil(round(window_s * 1000 / frame_ms, 6))))

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def size_bytes(self) -> int:
        """Bytes held."""
        return self._bytes

    def append(self, message: M) -> int:
        """Queues a message, dropping the oldest ones past a bound.

        Args:
            message: one encoded WebSocket message.

        Returns:
            How many messages this dropped (the new one included, if too big alone).
        """
        self.appended += 1
        if self.max_bytes is not None and len(message) > self.max_bytes:
            self.dropped += 1
            return 1
        self._queue.append(message)
        self._bytes += len(message)
        dropped = 0
        while (self.max_messages is not None and len(self._queue) > self.max_messages) or (
            self.max_bytes is not None and self._bytes > self.max_bytes
        ):
            self._bytes -= len(self._queue.popleft())
            dropped += 1
        self.dropped += dropped
        return dropped

    def peek(self) -> M | None:
        """The oldest message, left in place; None when empty."""
        return self._queue[0] if self._queue else None

    def pop(self) -> M | None:
        """Removes and returns the oldest message, counted as delivered; None when empty.

        The egress session keeps what it popped in flight until it is written, so a
        message whose send fails with the connection still goes first on the next one.
        """
        if not self._queue:
            return None
        message = self._queue.popleft()
        self._bytes -= len(message)
        self.delivered += 1
        return message


class LatestOnly(Backlog[M]):
    """Keeps only the newest message: for JPEGs, where a stale picture is worthless."""

    def __init__(self) -> None:
        super().__init__(max_messages=1)
