"""Fan-out logic: shared packets, keyframe gating, throttled keyframe requests."""

from __future__ import annotations

from sfu.forward import KEYFRAME_REQUEST_INTERVAL_S, Fanout
from sluice.media.types import Codec, EncodedFrame

VP8 = Codec("VP8", "video/VP8", 90_000, 96)


class Clock:
    now = 100.0

    def __call__(self) -> float:
        return self.now


def frame(ts: int, key: bool) -> EncodedFrame:
    return EncodedFrame(b"k" if key else b"d", ts, VP8, key, 0.0)


def test_video_subscriber_starts_at_a_keyframe_and_asks_for_one() -> None:
    asked: list[float] = []
    clock = Clock()
    fanout = Fanout("video", lambda: asked.append(clock.now), clock)
    sub = fanout.subscribe(lambda: None)
    assert asked == [100.0]
    fanout.deliver(frame(0, key=False))
    assert not sub.track.full and len(sub.track._queue) == 0
    fanout.deliver(frame(3000, key=True))
    fanout.deliver(frame(6000, key=False))
    queued = [packet for packet, _ in sub.track._queue]
    assert [bytes(p) for p in queued] == [b"k", b"d"]
    assert [p.pts for p in queued] == [3000, 6000]


def test_keyframe_requests_are_throttled_and_shared() -> None:
    asked: list[float] = []
    clock = Clock()
    fanout = Fanout("video", lambda: asked.append(clock.now), clock)
    fanout.subscribe(lambda: None)
    clock.now += 0.1
    fanout.subscribe(lambda: None)  # the keyframe asked for 100 ms ago serves it too
    assert len(asked) == 1
    clock.now += KEYFRAME_REQUEST_INTERVAL_S
    fanout.keyframe_needed()
    assert len(asked) == 2


def test_one_packet_object_is_shared_by_all_subscribers() -> None:
    fanout = Fanout("audio", lambda: None)
    a, b = fanout.subscribe(lambda: None), fanout.subscribe(lambda: None)
    opus = Codec("opus", "audio/opus", 48_000, 111)
    fanout.deliver(EncodedFrame(b"o", 960, opus, True, 0.0, sequence_number=7))
    assert a.track._queue[0][0] is b.track._queue[0][0]
    assert a.track._queue[0][1] == 7  # the source number, for the sender to keep


def test_after_a_loss_every_subscriber_waits_for_a_keyframe() -> None:
    """A delta frame right after lost ones would decode to a broken picture."""
    fanout = Fanout("video", lambda: None)
    sub = fanout.subscribe(lambda: None)
    fanout.deliver(frame(0, key=True))
    fanout.deliver(EncodedFrame(b"d", 3000, VP8, False, 0.0, after_gap=True))
    fanout.deliver(frame(6000, key=False))
    fanout.deliver(frame(9000, key=True))
    assert [bytes(p) for p, _ in sub.track._queue] == [b"k", b"k"]


def test_end_ends_every_subscriber_and_tells_it() -> None:
    fanout = Fanout("audio", lambda: None)
    told: list[int] = []
    subs = [fanout.subscribe(lambda i=i: told.append(i)) for i in range(2)]
    fanout.end()
    assert sorted(told) == [0, 1]
    assert all(s.track._ended for s in subs)
    late = fanout.subscribe(lambda: None)
    assert late.track._ended and not fanout.subscribers
