"""The ingest playout buffer: absorbs bursts, plays out one 20 ms frame per tick.

Senders may push faster than real time (text-to-speech sends a whole utterance at once);
the track must still advance at exactly real time and never go quiet on the wire. The
buffer sits between the socket reader and the paced sender:

    reader: while playout.has_room(): read, reassemble, push(frame)...
    sender: every tick: frame = playout.pop()

Nothing is dropped for lack of room: when the buffer is full the reader stops reading the
socket, so TCP pushes back on the sender. Only the endpoint itself drops audio, with a
`clear` (barge-in, extensions.md E2); its `mark`s come back when the audio queued before
them has been played.

Time is passed in as ticks: every `pop` is the next 20 ms of the track, so "played out"
means played on the track, whatever the wall clock did (a late tick, a skip ahead after a
stall). A frame popped at one tick has been played out by the next.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from worker.protocol.pcm import FRAME_BYTES, FRAME_DURATION_S, SILENCE, frames_for

DEFAULT_CAPACITY_S = 60.0  # spec §6 default: 60 s = 3 000 frames


class PlayoutClosed(Exception):
    """A frame was pushed after `close()`: the input side already said it was done."""


@dataclass(frozen=True, slots=True)
class MarkPlayed:
    """A mark to send back: its audio was played (or, `cleared`, dropped by a clear)."""

    name: str
    cleared: bool


@dataclass(frozen=True, slots=True)
class Cleared:
    """The answer to a clear: how much queued audio it dropped."""

    dropped_ms: int


PlayoutEvent = MarkPlayed | Cleared


class PlayoutBuffer:
    """A bounded FIFO of 20 ms frames, popped once per tick, silence when empty.

    The bound is a back-pressure signal, not a hard cap: `push` always accepts (audio is
    never dropped for lack of room) and the reader must stop reading while `has_room()`
    is false. The message read with the last free slot can complete up to
    `(32 764 + 3 839) // 3 840 = 9` frames of 48 kHz stereo PCM (largest payload plus
    carried-over remainder), and the padded frame flushed at close needs no room either,
    so the depth never exceeds `capacity_frames + 9`. Other input formats carry more time
    per byte: one 32 KiB message of 8 kHz μ-law is 4 s (205 frames) over.

    Underruns: `pop` on an empty buffer returns silence. That counts as an underrun only
    in the middle of a segment (audio arrived and no end-of-segment marker since), i.e.
    when the sender was too slow. Silence while idle, before any audio or after an end of
    segment, is the normal state of a live track and counts nothing. `underruns` counts
    episodes (the buffer running dry), `underrun_frames` the silent frames they cost.

    Marks and clears produce events, in the order they are to be sent to the endpoint;
    `take_events` hands them over. A mark waits at its place in the queue: it is due at
    the first tick after the last frame queued before it was popped, at once when nothing
    is queued. A clear empties the queue and sends the marks still waiting first: those
    whose audio was already popped as played, the others as `cleared`, then `Cleared`.

    Args:
        capacity_s: buffered audio at which the reader must pause, in seconds.

    Raises:
        ValueError: `capacity_s` is not positive.
    """

    def __init__(self, capacity_s: float = DEFAULT_CAPACITY_S) -> None:
        if not capacity_s > 0:
            raise ValueError(f"capacity_s must be positive, got {capacity_s}")
        self.capacity_frames = max(1, frames_for(capacity_s))
        self._frames: deque[bytes] = deque()
        self._in_segment = False  # audio pushed since the last end-of-segment marker
        self._dry = False  # the current underrun episode is already counted
        self._closed = False
        self.max_depth_frames = 0
        self.underruns = 0
        self.underrun_frames = 0
        self.pushed_frames = 0
        self.played_frames = 0  # audio frames popped, silence excluded
        self.silence_frames = 0  # silent frames popped, underruns and idle alike
        self.cleared_frames = 0  # frames dropped by clears
        self.cleared_ms = 0  # audio dropped by clears, as answered (partial frames included)
        # Frames are numbered from 0 in push order; `_head` is the number of the oldest
        # queued one (every lower number was popped or cleared). A mark waits as the
        # number the next pushed frame will get, i.e. behind every frame pushed before it.
        self._head = 0
        self._marks: deque[tuple[int, str]] = deque()
        self._events: list[PlayoutEvent] = []

    @property
    def depth_frames(self) -> int:
        """Frames waiting to be played."""
        return len(self._frames)

    @property
    def room_frames(self) -> int:
        """Frames that fit before the capacity is reached (0 when full or over)."""
        return max(0, self.capacity_frames - len(self._frames))

    def has_room(self) -> bool:
        """Whether the reader may read another message from the socket."""
        return len(self._frames) < self.capacity_frames

    @property
    def closed(self) -> bool:
        """Whether `close()` was called: no more input will come."""
        return self._closed

    @property
    def drained(self) -> bool:
        """Closed and everything played out: the adapter may end now."""
        return self._closed and not self._frames

    def push(self, frame: bytes) -> None:
        """Queues one 20 ms frame for playout; never refuses for lack of room.

        Args:
            frame: exactly `FRAME_BYTES` of s16le stereo.

        Raises:
            ValueError: the frame is not `FRAME_BYTES` long.
            PlayoutClosed: `close()` was called before.
        """
        if len(frame) != FRAME_BYTES:
            raise ValueError(f"a frame is {FRAME_BYTES} bytes, got {len(frame)}")
        if self._closed:
            raise PlayoutClosed("push after close")
        self._frames.append(frame)
        self._in_segment = True
        self.pushed_frames += 1
        self.max_depth_frames = max(self.max_depth_frames, len(self._frames))

    def mark_end_of_segment(self) -> None:
        """Records the end-of-segment marker: running dry after the queued frames is fine.

        Flush the reassembler first (its padded last frame belongs to this segment).
        """
        self._in_segment = False

    def close(self) -> None:
        """The endpoint closed: no more input. Queued frames still play; see `drained`.

        Flush the reassembler and push its last frame first. Idempotent.
        """
        self._closed = True
        self._in_segment = False

    @property
    def has_events(self) -> bool:
        """Whether marks or a clear's answer wait in `take_events`."""
        return bool(self._events)

    def take_events(self) -> list[PlayoutEvent]:
        """The events produced since the last call, in the order to send them."""
        events, self._events = self._events, []
        return events

    def mark(self, name: str) -> None:
        """Queues a mark behind the frames pushed so far.

        A mark ends the segment, like the end-of-segment marker: the endpoint waits for
        it, so running dry after the audio before it is no underrun. Flush the
        reassembler first, so that audio is all in the queue.

        Args:
            name: the endpoint's name for it, sent back as is.
        """
        self._in_segment = False
        if not self._frames and not self._marks:
            self._events.append(MarkPlayed(name, cleared=False))
        else:
            self._marks.append((self._head + len(self._frames), name))

    def clear(self, held_elsewhere_s: float = 0.0) -> int:
        """Drops every queued frame (barge-in); returns how many.

        Events: the waiting marks, in order (played if their audio was already popped,
        `cleared` if it was dropped), then `Cleared` with what was dropped.

        Args:
            held_elsewhere_s: audio dropped with it that never reached the queue (the
                reassembler's partial frame), for the answer's `droppedMs`.
        """
        for position, name in self._marks:
            self._events.append(MarkPlayed(name, cleared=position > self._head))
        self._marks.clear()
        dropped = len(self._frames)
        self._frames.clear()
        self._head += dropped
        self._in_segment = False
        self._dry = False
        dropped_ms = round((dropped * FRAME_DURATION_S + held_elsewhere_s) * 1000)
        self.cleared_frames += dropped
        self.cleared_ms += dropped_ms
        self._events.append(Cleared(dropped_ms))
        return dropped

    def pop(self) -> bytes:
        """The frame for this tick: the oldest queued frame, or silence when empty.

        Marks whose audio was popped at earlier ticks (so has been played out) become
        events first.
        """
        while self._marks and self._marks[0][0] <= self._head:
            self._events.append(MarkPlayed(self._marks.popleft()[1], cleared=False))
        if self._frames:
            self._dry = False
            self.played_frames += 1
            self._head += 1
            return self._frames.popleft()
        self.silence_frames += 1
        if self._in_segment:
            # Frames are played in arrival order, so an empty queue means everything
            # received has been played: the segment is open only if its last input was
            # audio, i.e. more audio was promised and did not arrive in time.
            self.underrun_frames += 1
            if not self._dry:
                self.underruns += 1
                self._dry = True
        return SILENCE
