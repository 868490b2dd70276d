"""The ingest playout buffer: absorbs bursts, plays out one 20 ms frame per tick.

Senders may push faster than real time (text-to-speech sends a whole utterance at once);
the track must still advance at exactly real time and never go quiet on the wire. The
buffer sits between the socket reader and the paced sender:

    reader: while playout.has_room(): read, reassemble, push(frame)...
    sender: every tick: frame = playout.pop()

Nothing is ever dropped: when the buffer is full the reader stops reading the socket, so
TCP pushes back on the sender.
"""

from __future__ import annotations

from collections import deque

from worker.protocol.pcm import FRAME_BYTES, SILENCE, frames_for

DEFAULT_CAPACITY_S = 60.0  # spec §6 default: 60 s = 3 000 frames


class PlayoutClosed(Exception):
    """A frame was pushed after `close()`: the input side already said it was done."""


class PlayoutBuffer:
    """A bounded FIFO of 20 ms frames, popped once per tick, silence when empty.

    The bound is a back-pressure signal, not a hard cap: `push` always accepts (audio is
    never dropped) and the reader must stop reading while `has_room()` is false. The
    message read with the last free slot can complete up to `(32 764 + 3 839) // 3 840 = 9`
    frames (largest payload plus carried-over remainder), and the padded frame flushed at
    close needs no room either, so the depth never exceeds `capacity_frames + 9`.

    Underruns: `pop` on an empty buffer returns silence. That counts as an underrun only
    in the middle of a segment (audio arrived and no end-of-segment marker since), i.e.
    when the sender was too slow. Silence while idle, before any audio or after an end of
    segment, is the normal state of a live track and counts nothing. `underruns` counts
    episodes (the buffer running dry), `underrun_frames` the silent frames they cost.

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

    def pop(self) -> bytes:
        """The frame for this tick: the oldest queued frame, or silence when empty."""
        if self._frames:
            self._dry = False
            self.played_frames += 1
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
