"""When to ask a publisher for a keyframe: at once, then again until one comes (pure).

A keyframe request (RTCP PLI) is one small datagram: lost as easily as the media it
repairs, and a keyframe sent in answer may be lost too. Until a keyframe arrives, a
receiver that cannot decode asks again every `retry_s`; after `fast_tries` unanswered
requests it backs off, doubling up to `max_interval_s`, so a publisher that never sends
one is not flooded. Any number of reasons to want one (several subscribers, a loss, a
decoder error) while one is awaited are one request.
"""

from __future__ import annotations

import math

KEYFRAME_RETRY_S = 0.3
KEYFRAME_MAX_INTERVAL_S = 2.0
KEYFRAME_FAST_TRIES = 10  # 3 s of asking every 0.3 s before backing off


class KeyframeRequests:
    """Decides when a keyframe request goes out; `now` is passed in (seconds, monotonic).

    Args:
        retry_s: between requests while a keyframe is awaited.
        max_interval_s: the longest interval the back-off reaches.
        fast_tries: requests sent `retry_s` apart before backing off.
    """

    def __init__(
        self,
        retry_s: float = KEYFRAME_RETRY_S,
        max_interval_s: float = KEYFRAME_MAX_INTERVAL_S,
        fast_tries: int = KEYFRAME_FAST_TRIES,
    ) -> None:
        self._retry_s = retry_s
        self._max_s = max_interval_s
        self._fast_tries = fast_tries
        self._waiting = False
        self._tries = 0  # requests sent since the keyframe was first wanted
        self._next_at = -math.inf
        self.sent = 0  # requests sent, in all

    @property
    def waiting(self) -> bool:
        """Whether a keyframe is wanted and has not come yet."""
        return self._waiting

    def want(self) -> None:
        """A keyframe is needed; asks at once unless one is already awaited."""
        if not self._waiting:
            self._waiting = True
            self._tries = 0
            self._next_at = -math.inf

    def got_keyframe(self) -> None:
        """One arrived: nothing more to ask for."""
        self._waiting = False

    def due(self, now: float) -> bool:
        """Whether to send a request now (then counted as sent)."""
        if not self._waiting or now < self._next_at:
            return False
        self._tries += 1
        self.sent += 1
        backoff = max(0, self._tries - self._fast_tries)
        self._next_at = now + min(self._max_s, self._retry_s * 2**backoff)
        return True
