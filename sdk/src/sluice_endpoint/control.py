"""Which `clear` or `mark` an answer from Sluice acknowledges (E2): no I/O.

Sluice answers in order: a mark when the audio before it has played out (or, with
`cleared: true`, when a `clear` dropped it, just before that clear's `cleared`), a clear
with `cleared`. So the oldest outstanding mark of a name, and the oldest outstanding
clear, are the ones answered. Requests are tickets (ints); the I/O layer keeps a future
per ticket.
"""

from __future__ import annotations

from collections import deque
from itertools import count

from sluice_endpoint.events import Cleared, MarkReached


class PlaybackControl:
    """Outstanding marks and clears of one ingest connection."""

    def __init__(self) -> None:
        self._tickets = count(1)
        self._marks: dict[str, deque[int]] = {}
        self._clears: deque[int] = deque()

    def mark_sent(self, name: str) -> int:
        ticket = next(self._tickets)
        self._marks.setdefault(name, deque()).append(ticket)
        return ticket

    def clear_sent(self) -> int:
        ticket = next(self._tickets)
        self._clears.append(ticket)
        return ticket

    def answered(self, answer: Cleared | MarkReached) -> int | None:
        """The ticket `answer` settles; None for an answer to nothing outstanding."""
        if isinstance(answer, Cleared):
            return self._clears.popleft() if self._clears else None
        waiting = self._marks.get(answer.name)
        if not waiting:
            return None
        ticket = waiting.popleft()
        if not waiting:
            del self._marks[answer.name]
        return ticket

    def outstanding(self) -> list[int]:
        """Every ticket not answered yet (to fail them when the connection closes)."""
        tickets = [t for waiting in self._marks.values() for t in waiting] + list(self._clears)
        self._marks.clear()
        self._clears.clear()
        return sorted(tickets)
