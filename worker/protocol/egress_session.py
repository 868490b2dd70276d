"""One egress adapter's endpoint session: what to send next, when to re-dial, why it ended.

Sans-I/O, in the manner of websockets' `Protocol`: no socket, no event loop, no clock.
Inputs are method calls, with the monotonic time passed in where it matters; outputs are
what they return and the session's state. The pipeline (`worker.pipelines.egress`) only
moves bytes and waits:

    session.connection_up(loop.time())
    while (message := session.next_message()) is not None:  # else: wait for `produce`
        await ws.send(message)
        session.written()
    session.connection_lost(loop.time(), close_code)        # 1000: ends endpoint_closed
    while (delay := session.redial_delay(loop.time())) is not None:
        await asyncio.sleep(delay)
        try:
            ws = await asyncio.wait_for(dial(), session.dial_timeout(loop.time()))
        except (DialError, TimeoutError):
            continue
        session.connection_up(loop.time())                  # flush, then live again
        break
    session.close_reason                                    # once `state` is ENDED

A message taken for sending stays "in flight" until `written()`: if the connection is lost
first, it goes first on the next connection, followed by the backlog in order
(at-least-once across a reconnect rather than a gap). The backlog keeps producing into
its bound meanwhile (audio: drop-oldest, video: the latest JPEG), and at every moment
`produced == sent + dropped + pending` for what this session was given.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from enum import StrEnum

from sluice.state.records import CloseReason
from worker.protocol.reconnect import DEFAULT_WINDOW_S, Backlog, Backoff, ReconnectWindow

CLOSE_NORMAL = 1000  # the endpoint says it is done (spec §7)
COUNTERS = ("packets", "bytes", "dropped", "reconnects")  # what the session counts


class SessionState(StrEnum):
    CONNECTING = "connecting"  # the first connection is not up yet (the runner dials it)
    CONNECTED = "connected"  # sending
    RECONNECTING = "reconnecting"  # lost: re-dialling within the window
    ENDED = "ended"  # `close_reason` says why


class EgressSession:
    """The send queue, the in-flight message and the reconnect window of one adapter.

    Args:
        backlog: holds what was produced and not yet taken for sending; its bound and
            drop policy are the media's (`Backlog.for_audio`, `LatestOnly`).
        window_s: how long to re-dial after a loss before ending `endpoint_unavailable`.
        backoff: delays between re-dial attempts; `Backoff()` by default.
        counters: the adapter's counters, updated in place (`packets`, `bytes`,
            `dropped`, `reconnects`), so a resumed adapter counts on; fresh zeros by
            default.
    """

    def __init__(
        self,
        backlog: Backlog,
        *,
        window_s: float = DEFAULT_WINDOW_S,
        backoff: Backoff | None = None,
        counters: MutableMapping[str, int] | None = None,
    ) -> None:
        self.backlog = backlog
        self.window_s = window_s
        self.backoff = backoff
        self.counters = counters if counters is not None else dict.fromkeys(COUNTERS, 0)
        self.state = SessionState.CONNECTING
        self.close_reason: CloseReason | None = None
        self.in_flight: bytes | None = None  # taken for sending, not yet written
        self.attempts = 0  # re-dials in the current or the last outage
        self.last_outage_s: float | None = None  # from loss to reconnect, the last time
        self._window: ReconnectWindow | None = None

    # --- outputs ------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Messages produced and neither written nor dropped: the backlog and in flight."""
        return len(self.backlog) + int(self.in_flight is not None)

    @property
    def expires_at(self) -> float | None:
        """When the reconnect window ends (monotonic seconds); None unless reconnecting."""
        return self._window.deadline if self._window is not None else None

    def next_message(self) -> bytes | None:
        """What to send next: the in-flight message, else the oldest of the backlog.

        None when there is nothing to send, or no connection to send it on. The message
        stays in flight (and is returned again) until `written()`.
        """
        if self.state is not SessionState.CONNECTED:
            return None
        if self.in_flight is None:
            self.in_flight = self.backlog.pop()
        return self.in_flight

    def dial_timeout(self, now: float) -> float:
        """The longest the next re-dial may take: what is left of the window.

        Args:
            now: the monotonic clock.
        """
        return self._window.remaining(now) if self._window is not None else 0.0

    # --- inputs -------------------------------------------------------------------

    def produce(self, message: bytes) -> int:
        """Queues one encoded message for the endpoint, connected or not.

        Args:
            message: one WebSocket message (an encoded Packet).

        Returns:
            How many messages the backlog dropped to keep its bound (also counted).
        """
        dropped = self.backlog.append(message)
        self.counters["dropped"] += dropped
        return dropped

    def written(self) -> None:
        """The in-flight message was written to the connection: it counts as sent.

        Raises:
            RuntimeError: nothing was in flight (a sender bug).
        """
        if self.in_flight is None:
            raise RuntimeError("written() without a message in flight")
        self.counters["packets"] += 1
        self.counters["bytes"] += len(self.in_flight)
        self.in_flight = None

    def connection_up(self, now: float) -> None:
        """A connection to the endpoint is open: the first, or a re-dialled one.

        Ignored once the session has ended (the caller closes that connection).

        Args:
            now: the monotonic clock.
        """
        if self.state is SessionState.ENDED:
            return
        if self.state is SessionState.RECONNECTING:
            assert self._window is not None
            self.counters["reconnects"] += 1
            self.last_outage_s = now - self._window.lost_at
            self._window = None
        self.state = SessionState.CONNECTED

    def connection_lost(self, now: float, code: int | None) -> None:
        """The connection closed: 1000 ends the session, anything else opens the window.

        Only the current connection counts; a loss reported while not connected (after
        the session ended, or about a connection already given up) changes nothing.

        Args:
            now: the monotonic clock, when the loss was found.
            code: the close code the endpoint sent; None when the connection was lost
                without a close frame (reset, timeout, 1006).
        """
        if self.state is not SessionState.CONNECTED:
            return
        if code == CLOSE_NORMAL:
            self._end(CloseReason.ENDPOINT_CLOSED)  # it said it is done
            return
        # 1001 "going away" during a restart included: it may come back.
        self.state = SessionState.RECONNECTING
        self.attempts = 0
        self._window = ReconnectWindow(now, window_s=self.window_s, backoff=self.backoff)

    def redial_delay(self, now: float) -> float | None:
        """Seconds to wait before the next re-dial, which it counts as an attempt.

        None when there is nothing to re-dial: not reconnecting, or the window has no
        room for another attempt, which ends the session with `endpoint_unavailable`.
        This is how time passing reaches the session: call it after each failed dial.

        Args:
            now: the monotonic clock.
        """
        if self._window is None:
            return None
        delay = self._window.next_delay(now)
        self.attempts = self._window.attempts
        if delay is None:
            self._end(CloseReason.ENDPOINT_UNAVAILABLE)
        return delay

    def track_ended(self) -> None:
        """The source is gone (the publisher left, or the SFU): ends `track_ended`."""
        self._end(CloseReason.TRACK_ENDED)

    def media_failed(self) -> None:
        """The media work stopped (a decoder or encoder broke): ends `internal_error`."""
        self._end(CloseReason.INTERNAL_ERROR)

    def _end(self, reason: CloseReason) -> None:
        if self.state is SessionState.ENDED:
            return  # the first reason stands
        self.state = SessionState.ENDED
        self.close_reason = reason
        self._window = None
