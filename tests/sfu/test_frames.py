"""Frame assembly without I/O: packets in, frames out."""

from __future__ import annotations

from sluice.media.frames import (
    LATE_WINDOW,
    FrameAssembler,
    PayloadFrameAssembler,
    TimestampUnwrapper,
    h264_nal_types,
    is_keyframe,
    seq_distance,
    starts_frame,
)
from sluice.media.keyframes import KeyframeRequests
from sluice.media.rtp import vp9


def video(hold: int = 0) -> FrameAssembler:
    a = FrameAssembler(single_packet_frames=False, hold_frames=hold)
    assert a.add(99, 0, True, b"tail") == []  # the first marker syncs it
    return a


def test_audio_packets_are_frames_at_once() -> None:
    a = FrameAssembler(single_packet_frames=True)
    assert [f.data for f in a.add(10, 960, False, b"a")] == [b"a"]
    assert [f.data for f in a.add(11, 1920, False, b"b")] == [b"b"]


def test_audio_gap_is_skipped_without_waiting_and_a_late_packet_still_delivered() -> None:
    """A forwarder leaves ordering to the receivers' jitter buffers: late is not lost."""
    a = FrameAssembler(single_packet_frames=True)
    a.add(10, 0, False, b"a")
    assert [f.data for f in a.add(12, 1920, False, b"c")] == [b"c"]
    assert [(f.data, f.first_seq) for f in a.add(11, 960, False, b"b")] == [(b"b", 11)]
    assert a.add(11, 960, False, b"b") == []  # a duplicate
    assert a.add(12, 1920, False, b"c") == []
    assert a.add(12 - LATE_WINDOW, 0, False, b"old") == []  # too late to be of use
    assert [f.data for f in a.add(13, 2880, False, b"d")] == [b"d"]


def test_audio_hold_waits_for_a_reordered_packet() -> None:
    a = FrameAssembler(single_packet_frames=True, hold_frames=1)
    a.add(10, 0, False, b"a")
    assert a.add(12, 0, False, b"c") == []
    assert [f.data for f in a.add(11, 0, False, b"b")] == [b"b", b"c"]


def test_video_frame_is_released_at_its_marker() -> None:
    a = video()
    assert a.add(100, 3000, False, b"x") == []
    frames = a.add(101, 3000, True, b"y")
    assert [(f.data, f.timestamp, f.first_seq) for f in frames] == [(b"xy", 3000, 100)]


def test_video_without_marker_ends_at_timestamp_change() -> None:
    a = video()
    a.add(100, 3000, False, b"x")
    assert [f.data for f in a.add(101, 6000, True, b"y")] == [b"x", b"y"]


def test_video_waits_for_retransmission_within_hold() -> None:
    a = video(hold=2)
    a.add(100, 3000, False, b"x1")
    assert a.add(102, 6000, True, b"y") == []  # 101 missing
    frames = a.add(101, 3000, True, b"x2")  # retransmitted
    assert [f.data for f in frames] == [b"x1x2", b"y"]
    assert not a.lost


def test_video_gives_up_on_a_hole_and_flags_loss() -> None:
    a = video(hold=0)
    a.add(100, 3000, False, b"x1")  # 101 (its marker) never comes
    # y follows a hole, so it may lack packets: it is dropped with x and loss is flagged.
    assert a.add(102, 6000, True, b"y") == []
    assert a.lost
    assert [f.data for f in a.add(103, 9000, True, b"z")] == [b"z"]


def test_the_frame_after_a_given_up_hole_says_so() -> None:
    """A delta frame after a lost one decodes to a broken picture: its consumer must know."""
    a = video(hold=0)
    assert [f.after_gap for f in a.add(100, 3000, True, b"x")] == [False]
    # 101 lost: 102 may be the tail of its frame, so the frame after it is the next one.
    assert a.add(102, 6000, True, b"z") == [] and a.lost
    assert [(f.data, f.after_gap) for f in a.add(103, 9000, True, b"w")] == [(b"w", True)]
    assert [f.after_gap for f in a.add(104, 12000, True, b"v")] == [False]


def test_keyframe_requests_retry_until_one_comes_then_back_off() -> None:
    r = KeyframeRequests(retry_s=0.3, max_interval_s=1.0, fast_tries=3)
    assert not r.due(0.0)  # nothing wanted
    r.want()
    assert r.due(0.0) and not r.due(0.1)
    r.want()  # another subscriber asks meanwhile: the same request
    assert not r.due(0.2) and r.due(0.3) and r.due(0.6)
    assert not r.due(0.8) and r.due(0.9)  # the third try unanswered: backing off
    assert not r.due(1.4) and r.due(1.5)  # 0.6 s
    assert not r.due(2.4) and r.due(2.5)  # 1.0 s at most
    r.got_keyframe()
    assert not r.due(5.0) and r.sent == 6
    r.want()
    assert r.due(5.0)  # a new loss asks at once


def test_video_syncs_on_a_frame_start_hint() -> None:
    a = FrameAssembler(single_packet_frames=False)
    assert a.add(5, 0, False, b"k1", starts_frame=True) == []
    assert [f.data for f in a.add(6, 0, True, b"k2")] == [b"k1k2"]


def test_sequence_wraparound() -> None:
    a = FrameAssembler(single_packet_frames=True)
    out = a.add(65535, 0, False, b"a") + a.add(0, 0, False, b"b")
    assert [f.data for f in out] == [b"a", b"b"]
    assert seq_distance(0, 65535) == 1 and seq_distance(65535, 0) == -1


def test_timestamp_unwrap() -> None:
    u = TimestampUnwrapper()
    assert u.unwrap(2**32 - 10) == 0
    assert u.unwrap(5) == 15
    assert u.unwrap(2**32 - 5) == 5  # reordered from before the wrap


def test_keyframe_and_frame_start_detection() -> None:
    assert is_keyframe("VP8", b"\x10\x02") and not is_keyframe("VP8", b"\x11\x02")
    assert is_keyframe("opus", b"")
    idr = b"\x00\x00\x00\x01\x67\xaa\x00\x00\x00\x01\x68\xbb\x00\x00\x00\x01\x65\xcc"
    assert h264_nal_types(idr) == [7, 8, 5] and is_keyframe("H264", idr)
    assert not is_keyframe("H264", b"\x00\x00\x00\x01\x41\xcc")
    assert starts_frame("VP8", b"\x90\x80") and not starts_frame("VP8", b"\x80\x80")
    assert starts_frame("H264", b"\x78\x00\x02\x67\x42")  # STAP-A opening with an SPS
    assert not starts_frame("H264", b"\x7c\x85")  # FU-A


def test_vp9_and_h265_keyframe_detection() -> None:
    # A VP9 keyframe header: frame marker, profile 0, KEY_FRAME, then the sync code.
    key = bytes([0x82, 0x49, 0x83, 0x42, 0x00, 0x13, 0xF0, 0x0E, 0xF0])
    assert is_keyframe("VP9", key) and not is_keyframe("VP9", b"\x86\x00")
    assert not is_keyframe("vp9", b"")
    idr = b"\x00\x00\x00\x01\x40\x01\x0c\x00\x00\x00\x01\x26\x01\xaf"  # VPS, IDR_W_RADL
    assert is_keyframe("H265", idr)
    assert not is_keyframe("H265", b"\x00\x00\x00\x01\x02\x01\xd0")  # TRAIL_R
    assert not is_keyframe("H265", b"no start code")


def vp9_payloads(keyframe: bool) -> list[bytes]:
    header = b"\x82\x49\x83\x42\x00\x13\xf0\x0e\xf0" if keyframe else b"\x86\x00\x40"
    return vp9.packetize(header + bytes(40), picture_id=1, mtu=30, keyframe=keyframe)


def test_payload_assembler_asks_for_a_keyframe_after_a_loss_and_again_until_one() -> None:
    a = PayloadFrameAssembler(
        vp9.Vp9FrameAssembler(), vp9.Vp9PayloadError, KeyframeRequests(retry_s=0.5)
    )
    seq = 0

    def send(keyframe: bool, ts: int, skip: int | None = None) -> list[bool]:
        nonlocal seq
        out = []
        payloads = vp9_payloads(keyframe)
        for i, payload in enumerate(payloads):
            if i != skip:
                out += [f.keyframe for f in a.add(seq, ts, i == len(payloads) - 1, payload)]
            seq += 1
        return out

    assert send(True, 0) == [True] and not a.keyframe_due(0.0)
    assert send(False, 3000) == [False] and not a.keyframe_due(0.03)
    assert send(False, 6000, skip=1) == []  # lost a packet
    assert send(False, 9000) == [] and a.keyframe_due(0.1)  # the loss shows: ask
    assert send(False, 12000) == [] and not a.keyframe_due(0.2)  # asked just now
    assert not a.keyframe_due(0.5)
    assert a.keyframe_due(0.7)  # no keyframe yet: ask again
    assert a.add(seq, 15000, True, b"\xff") == [] and a.malformed == 1  # skipped
    seq += 1
    assert send(True, 18000) == [True] and not a.keyframe_due(2.0)


def test_a_sender_that_restarts_its_numbering_is_followed_at_once() -> None:
    a = FrameAssembler(single_packet_frames=False)
    a.add(29_999, 0, True, b"tail")  # syncs
    assert [f.data for f in a.add(30_000, 3000, True, b"x")] == [b"x"]
    assert a.add(29_990, 6000, True, b"late") == []  # merely late: dropped
    # Far behind: a restarted sender. Its next frame comes through, not 29 000 packets on.
    assert a.add(1000, 90, False, b"head") == []
    assert [f.data for f in a.add(1001, 90, True, b"tail")] == [b"headtail"]
    assert a.lost  # the caller asks for a keyframe


def test_vp9_assembler_follows_a_restarted_sender() -> None:
    assembler = vp9.Vp9FrameAssembler()

    def picture(first_seq: int, ts: int) -> list[vp9.Vp9Frame]:
        payloads = vp9_payloads(keyframe=True)
        frames = []
        for i, payload in enumerate(payloads):
            last = i == len(payloads) - 1
            frame = assembler.feed(
                payload, sequence_number=first_seq + i, timestamp=ts, marker=last
            )
            if frame is not None:
                frames.append(frame)
        return frames

    assert len(picture(30_000, 3000)) == 1
    assert len(picture(1000, 6000)) == 1  # not dropped as "too late"
