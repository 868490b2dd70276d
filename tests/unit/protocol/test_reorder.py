"""Egress audio ordering and concealment decisions: packets in, what to play out."""

from __future__ import annotations

import itertools
import random

from hypothesis import given
from hypothesis import strategies as st

from worker.protocol.reorder import AudioReorder, Conceal, Decode, Play

# A 20 ms CELT-only packet (config 31, code 0): 960 samples, never any FEC.
CELT = bytes([31 << 3])
# A 20 ms hybrid packet (config 15) whose first SILK bits say: voice, LBRR (FEC) present.
WITH_FEC = bytes([15 << 3, 0b1100_0000])


def pkt(n: int, fec: bool = False) -> tuple[int, int, bytes]:
    """Packet n of a stream: sequence number, RTP timestamp, payload."""
    return (1000 + n) % 65536, 5000 + n * 960, (WITH_FEC if fec else CELT) + bytes([n % 256])


def push(r: AudioReorder, n: int, now: float, fec: bool = False) -> list[Play]:
    return r.push(*pkt(n, fec), now)


def timestamps(out: list[Play]) -> list[int]:
    return [(p.timestamp - 5000) // 960 for p in out]


def test_in_order_packets_play_at_once() -> None:
    r = AudioReorder()
    for n in range(5):
        out = push(r, n, n * 0.02)
        assert [type(p) for p in out] == [Decode] and timestamps(out) == [n]
    assert r.deadline() is None


def test_a_late_packet_is_put_in_its_place() -> None:
    r = AudioReorder(hold_packets=2, start_hold=2)
    push(r, 0, 0.0)
    assert push(r, 2, 0.04) == []  # 1 missing: wait
    assert r.deadline() == 0.04 + 0.06
    assert timestamps(push(r, 1, 0.05)) == [1, 2]
    assert r.counts.reordered == 1 and r.counts.concealed == 0


def test_a_hole_is_given_up_after_hold_packets_and_concealed() -> None:
    r = AudioReorder(hold_packets=2, start_hold=2)
    push(r, 0, 0.0)
    push(r, 2, 0.04)
    push(r, 3, 0.06)
    out = push(r, 4, 0.08)  # a third packet behind the hole: give up on 1
    assert [type(p) for p in out] == [Conceal, Decode, Decode, Decode]
    assert timestamps(out) == [1, 2, 3, 4]
    assert out[0] == Conceal(5000 + 960, 960, None)  # no FEC in CELT: PLC
    assert push(r, 1, 0.09) == [] and r.counts.late == 1  # too late now: dropped
    assert (r.counts.concealed, r.counts.lost) == (1, 0)


def test_a_hole_is_given_up_after_max_wait() -> None:
    r = AudioReorder(hold_packets=2, max_wait_s=0.06, start_hold=2)
    push(r, 0, 0.0)
    push(r, 2, 0.04)
    assert r.expire(0.09) == []
    assert timestamps(r.expire(0.10)) == [1, 2]


def test_the_frame_before_a_packet_with_fec_is_rebuilt_from_it() -> None:
    r = AudioReorder(hold_packets=0)
    push(r, 0, 0.0)
    out = push(r, 3, 0.06, fec=True)  # 1 and 2 lost; 3 carries 2 again
    assert [type(p) for p in out] == [Conceal, Conceal, Decode]
    assert [c.fec for c in out[:2] if isinstance(c, Conceal)] == [None, pkt(3, True)[2]]
    assert (r.counts.concealed, r.counts.fec) == (2, 1)


def test_a_hole_over_100_ms_jumps_and_is_counted_lost() -> None:
    r = AudioReorder(hold_packets=0)
    push(r, 0, 0.0)
    assert timestamps(push(r, 6, 0.2)) == [1, 2, 3, 4, 5, 6]  # 100 ms: concealed
    assert r.counts.concealed == 5
    assert timestamps(push(r, 13, 0.4)) == [13]  # 6 frames: 120 ms, a jump
    assert (r.counts.concealed, r.counts.lost) == (5, 6)


def test_a_source_gap_is_not_a_loss() -> None:
    """DTX or a pause: the timestamp jumps while sequence numbers go on by one."""
    r = AudioReorder()
    push(r, 0, 0.0)
    seq, _, data = pkt(1)
    out = r.push(seq, 5000 + 50 * 960, data, 1.0)
    assert [type(p) for p in out] == [Decode] and r.counts == type(r.counts)()


def test_the_window_opens_on_a_network_that_reorders_and_closes_when_it_stops() -> None:
    r = AudioReorder(hold_packets=2, calm_s=10.0)
    push(r, 0, 0.0)
    assert timestamps(push(r, 2, 0.04)) == [1, 2]  # no wait: 1 concealed at once
    assert push(r, 1, 0.05) == [] and (r.counts.late, r.hold) == (1, 1)  # it was late
    assert push(r, 4, 0.08) == []  # now one packet may wait behind a hole
    assert timestamps(push(r, 3, 0.09)) == [3, 4]
    assert r.counts.concealed == 1
    push(r, 6, 10.2)
    assert r.hold == 0  # 10 s without a late packet


def test_duplicates_and_a_restarted_source() -> None:
    r = AudioReorder(start_hold=2)
    push(r, 0, 0.0)
    push(r, 2, 0.04)
    assert push(r, 2, 0.05) == [] and r.counts.duplicates == 1
    out = r.push(30_000, 777, CELT, 0.06)  # far away: a new numbering
    assert [p.timestamp for p in out] == [5000 + 2 * 960, 777]
    assert [p.timestamp for p in r.push(30_001, 777 + 960, CELT, 0.07)] == [777 + 960]


def test_sequence_numbers_wrap() -> None:
    r = AudioReorder(start_hold=2)
    r.push(65535, 0, CELT, 0.0)
    assert r.push(1, 1920, CELT, 0.04) == []
    assert [p.timestamp for p in r.push(0, 960, CELT, 0.05)] == [960, 1920]


@given(st.integers(0, 2**31), st.floats(0.0, 0.3))
def test_any_arrival_order_plays_each_frame_once_in_order(seed: int, loss: float) -> None:
    """Whatever the network did, timestamps only go up by one frame or jump past 100 ms."""
    rng = random.Random(seed)
    arrivals = []
    for n in range(200):
        if rng.random() >= loss:
            arrivals.append((n * 0.02 + rng.uniform(0.01, 0.05), n))
    arrivals.sort()
    r = AudioReorder(start_hold=rng.randint(0, 2))
    out: list[Play] = []
    for now, n in arrivals:
        out += r.expire(now) + push(r, n, now)
    out += r.expire(10.0)
    frames = timestamps(out)
    steps = [b - a for a, b in itertools.pairwise(frames)]
    assert all(s == 1 or s > 5 for s in steps), steps
    decoded = {f for f, p in zip(frames, out, strict=True) if isinstance(p, Decode)}
    assert len(decoded) + r.counts.late + r.counts.duplicates == len(arrivals)
