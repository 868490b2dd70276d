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

With `events` (E4), `next_message` also gives the text events, in their place: `start`
first on every connection; `gap` right before the first media after media was lost
(dropped from the backlog, or lost with a worker: `lost_from`); and `closing` gives the
`stop` to send before Sluice closes the connection. Events are not counted as Packets.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sluice.state.records import CloseReason
from sluice.wire.packet import UINT32_MOD
from worker.protocol.reconnect import DEFAULT_WINDOW_S, Backlog, Backoff, ReconnectWindow

CLOSE_NORMAL = 1000  # the endpoint says it is done (spec §7)
COUNTERS = ("packets", "bytes", "dropped", "reconnects")  # what the session counts


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One media message and its place in the stream (its Packet's numbers, which raw
    framing does not send but the events and the backlog still go by)."""

    data: bytes
    sequence: int
    timestamp: int

    def __len__(self) -> int:
        return len(self.data)  # what the backlog's byte bound counts


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What the E4 events say about the stream.

    Args:
        adapter_id, session_id, track_name: the adapter's.
        format: the `format` object of `start` (codec, rate, ..., framing).
        timestamp_step: wire `timestamp` units from one Packet to the next, to tell the
            next Packet's when none is waiting yet (audio: one frame; JPEG: one interval).
        first_connection: the number of this session's first connection (a resumed
            adapter's count goes on from the lost process's).
    """

    adapter_id: str
    session_id: str
    track_name: str
    format: Mapping[str, Any]
    timestamp_step: int
    first_connection: int = 1


def _event(**fields: Any) -> str:
    return json.dumps(fields, separators=(",", ":"))


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
        events: send the E4 events, saying this about the stream; None: no events.
        first_sequence, first_timestamp: the numbers of the first Packet this session
            will be given (what `start` says when nothing was produced yet).
    """

    def __init__(
        self,
        backlog: Backlog[Outgoing],
        *,
        window_s: float = DEFAULT_WINDOW_S,
        backoff: Backoff | None = None,
        counters: MutableMapping[str, int] | None = None,
        events: StreamInfo | None = None,
        first_sequence: int = 0,
        first_timestamp: int = 0,
    ) -> None:
        self.backlog = backlog
        self.window_s = window_s
        self.backoff = backoff
        self.counters = counters if counters is not None else dict.fromkeys(COUNTERS, 0)
        self.state = SessionState.CONNECTING
        self.close_reason: CloseReason | None = None
        self.in_flight: Outgoing | None = None  # media taken for sending, not yet written
        self.attempts = 0  # re-dials in the current or the last outage
        self.last_outage_s: float | None = None  # from loss to reconnect, the last time
        self._window: ReconnectWindow | None = None
        self.events = events
        self.connection = 0 if events is None else events.first_connection - 1
        self._start: str | None = None  # this connection's `start`, not yet written
        self._gap: str | None = None  # the `gap` that goes right before `in_flight`
        self._lost_from: tuple[int, int] | None = None  # first media lost since the last sent
        self._next = (first_sequence, first_timestamp)  # of the next Packet to be produced

    # --- outputs ------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Messages produced and neither written nor dropped: the backlog and in flight."""
        return len(self.backlog) + int(self.in_flight is not None)

    @property
    def expires_at(self) -> float | None:
        """When the reconnect window ends (monotonic seconds); None unless reconnecting."""
        return self._window.deadline if self._window is not None else None

    def next_message(self) -> bytes | str | None:
        """What to send next: an event (text), the in-flight media, else the backlog's oldest.

        None when there is nothing to send, or no connection to send it on. The message
        stays in flight (and is returned again) until `written()`.
        """
        if self.state is not SessionState.CONNECTED:
            return None
        if self._start is not None:
            return self._start
        if self.in_flight is None:
            self.in_flight = self.backlog.pop()
            if self.in_flight is None:
                return None
            if self._lost_from is not None:
                self._gap = self._gap_event(self._lost_from, self.in_flight)
                self._lost_from = None
        if self._gap is not None:
            return self._gap
        return self.in_flight.data

    def dial_timeout(self, now: float) -> float:
        """The longest the next re-dial may take: what is left of the window.

        Args:
            now: the monotonic clock.
        """
        return self._window.remaining(now) if self._window is not None else 0.0

    # --- inputs -------------------------------------------------------------------

    def produce(self, message: bytes, sequence: int, timestamp: int) -> int:
        """Queues one encoded message for the endpoint, connected or not.

        Args:
            message: one binary WebSocket message: an encoded Packet, or the media
                alone with raw framing (E3).
            sequence, timestamp: its Packet's `sequenceNumber` and `timestamp`.

        Returns:
            How many messages the backlog dropped to keep its bound (also counted).
        """
        item = Outgoing(message, sequence, timestamp)
        oldest = self.backlog.peek()
        dropped = self.backlog.append(item)
        if dropped:
            self.counters["dropped"] += dropped
            # Drop-oldest: the first lost is the oldest held, unless the new one itself
            # could not be kept (then the oldest is still there).
            first = oldest if oldest is not None and self.backlog.peek() is not oldest else item
            self.lost_from(first.sequence, first.timestamp)
        step = self.events.timestamp_step if self.events is not None else 0
        self._next = ((sequence + 1) % UINT32_MOD, (timestamp + step) % UINT32_MOD)
        return dropped

    def lost_from(self, sequence: int, timestamp: int) -> None:
        """Media from this Packet on was lost (a resume after a worker was lost says so).

        The `gap` event goes right before the next media sent; earlier losses not yet
        told stand (the gap starts at the first).
        """
        if self._lost_from is None:
            self._lost_from = (sequence, timestamp)

    def written(self) -> None:
        """The message `next_message` gave was written to the connection.

        Media counts as sent; events are not counted.

        Raises:
            RuntimeError: nothing was in flight (a sender bug).
        """
        if self._start is not None:
            self._start = None
        elif self._gap is not None:
            self._gap = None
        elif self.in_flight is None:
            raise RuntimeError("written() without a message in flight")
        else:
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
        self.connection += 1
        self._start = self._start_event()

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
        self._start = None  # the next connection gets its own
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

    def closing(self, reason: CloseReason) -> str | None:
        """Sluice closes the connection now: ends the session (the first reason stands).

        Args:
            reason: why, when nothing ended the session before (`api_close`, `shutdown`).

        Returns:
            The `stop` event to send before closing; None without events.
        """
        self._end(reason)
        if self.events is None:
            return None
        assert self.close_reason is not None
        return _event(event="stop", reason=self.close_reason.value)

    # --- events -------------------------------------------------------------------

    def _start_event(self) -> str | None:
        info = self.events
        if info is None:
            return None
        # The Packet that follows: the one a lost connection left in flight, else the
        # oldest waiting, else the next to be produced.
        waiting = self.in_flight if self.in_flight is not None else self.backlog.peek()
        sequence, timestamp = (
            (waiting.sequence, waiting.timestamp) if waiting is not None else self._next
        )
        return _event(
            event="start",
            adapterId=info.adapter_id,
            sessionId=info.session_id,
            trackName=info.track_name,
            connection=self.connection,
            format=dict(info.format),
            sequenceNumber=sequence,
            timestamp=timestamp,
        )

    def _gap_event(self, lost: tuple[int, int], following: Outgoing) -> str | None:
        if self.events is None:
            return None
        sequence, timestamp = lost
        return _event(
            event="gap",
            droppedFrames=(following.sequence - sequence) % UINT32_MOD,
            fromTimestamp=timestamp,
            toTimestamp=following.timestamp,
        )

    def _end(self, reason: CloseReason) -> None:
        if self.state is SessionState.ENDED:
            return  # the first reason stands
        self.state = SessionState.ENDED
        self.close_reason = reason
        self._window = None
