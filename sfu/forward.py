"""Fan-out of one published track's encoded frames to its subscribers' senders.

One `av.Packet` is built per frame and shared by every subscriber: the senders only read
it in `pack()`. A video subscriber starts at a keyframe (a decoder cannot start on a
delta frame), so it drops frames until one arrives and asks the publisher for one; so
does every subscriber after frames were lost, since the next delta frame would decode to
a broken picture. Audio goes out packet by packet with its source sequence number, late
packets included (`sluice.media.renumber`): the subscribers' jitter buffers reorder.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sluice.errors import InvalidParams
from sluice.media.aiortc_internals import (
    on_keyframe_request,
    renumber_like_source,
    restrict_codecs,
)
from sluice.media.frames import TimestampUnwrapper
from sluice.media.packet_track import PacketTrack, make_packet
from sluice.media.types import EncodedFrame
from sluice.state.records import MediaKind

if TYPE_CHECKING:
    from sfu.tracks import SessionTrack

KEYFRAME_REQUEST_INTERVAL_S = 0.3  # one PLI serves every subscriber waiting meanwhile
AUDIO_QUEUE_FRAMES = 10  # 200 ms: a late-starting sender must not begin with stale audio
VIDEO_QUEUE_FRAMES = 90  # 3 s at 30 fps: from a keyframe until the sender reads


class Subscriber:
    """One subscriber's view of a published track: the track its sender reads."""

    def __init__(self, fanout: Fanout, on_source_end: Callable[[], None]) -> None:
        self.fanout = fanout
        self.on_source_end = on_source_end
        video = fanout.kind == MediaKind.VIDEO
        self.waiting_keyframe = video
        self.track = PacketTrack(
            fanout.kind, max_queue=VIDEO_QUEUE_FRAMES if video else AUDIO_QUEUE_FRAMES
        )
        self.track.on("ended", self.close)

    def close(self) -> None:
        self.fanout.unsubscribe(self)


class Fanout:
    """Delivers a published track's frames to its subscribers.

    Args:
        kind: the forwarded track's `MediaKind`.
        request_keyframe: asks the publisher for a keyframe (a PLI).
        clock: seconds, monotonic.
    """

    def __init__(
        self,
        kind: str,
        request_keyframe: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kind = kind
        self.subscribers: set[Subscriber] = set()
        self.frames = 0  # received from the publisher
        self.forwarded = 0  # handed to a subscriber's sender (one per subscriber per frame)
        self.ended = False
        self._request_keyframe = request_keyframe
        self._clock = clock
        self._last_request = -math.inf
        self._unwrap = TimestampUnwrapper()

    def subscribe(self, on_source_end: Callable[[], None]) -> Subscriber:
        """A new subscriber; for video, a keyframe is requested right away."""
        sub = Subscriber(self, on_source_end)
        if self.ended:
            sub.track.end()
            return sub
        self.subscribers.add(sub)
        if sub.waiting_keyframe:
            self.keyframe_needed()
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self.subscribers.discard(sub)

    def keyframe_needed(self) -> None:
        """Asks the publisher for a keyframe unless one was asked for very recently."""
        now = self._clock()
        if now - self._last_request >= KEYFRAME_REQUEST_INTERVAL_S:
            self._last_request = now
            self._request_keyframe()

    def deliver(self, frame: EncodedFrame) -> None:
        """Hands one frame to every subscriber (called per frame: keep it lean)."""
        self.frames += 1
        pts = self._unwrap.unwrap(frame.timestamp)
        if not self.subscribers:
            return
        packet = None
        starving = False
        video = self.kind == MediaKind.VIDEO
        broken = video and frame.after_gap and not frame.keyframe
        for sub in self.subscribers:
            if broken:
                sub.waiting_keyframe = True  # the publisher was asked for one (a loss)
            if video and sub.track.full:
                # Its sender is not reading; dropping a video frame would break the chain
                # of references, so restart it at a keyframe instead.
                sub.track.clear()
                sub.waiting_keyframe = True
            if sub.waiting_keyframe:
                if not frame.keyframe:
                    # Ask again only for senders that read: one that is still connecting
                    # keeps the keyframe asked for at subscribe time in its queue.
                    starving = starving or sub.track.reading
                    continue
                sub.waiting_keyframe = False
            if packet is None:
                packet = make_packet(frame.data, pts, frame.codec.clock_rate)
            sub.track.push(packet, frame.sequence_number)
            self.forwarded += 1
        if starving:
            self.keyframe_needed()

    def end(self) -> None:
        """The published track is gone: every subscriber's track ends, and it is told."""
        self.ended = True
        subs, self.subscribers = self.subscribers, set()
        for sub in subs:
            sub.track.end()
            sub.on_source_end()


def hook_sender(sender: Any, sub: Subscriber) -> None:
    """Hooks a subscriber's sender: its keyframe requests, its audio's numbering."""
    on_keyframe_request(sender, sub.fanout.keyframe_needed)
    if sub.fanout.kind == MediaKind.AUDIO:
        track = sub.track
        renumber_like_source(sender, lambda: track.sequence)


def restrict_to_source(transceiver: Any, source: SessionTrack) -> None:
    """Offers only the source's codec: a forwarder cannot translate."""
    if source.codec is None:
        return
    try:
        restrict_codecs(transceiver, source.codec)
    except ValueError as exc:
        raise InvalidParams(f"cannot forward {source.name!r}: {exc}") from None
