"""Frame assembly without I/O: packets in, frames out."""

from __future__ import annotations

from sfu.frames import (
    FrameAssembler,
    TimestampUnwrapper,
    h264_nal_types,
    is_keyframe,
    seq_distance,
    starts_frame,
)


def video(hold: int = 0) -> FrameAssembler:
    a = FrameAssembler(single_packet_frames=False, hold_frames=hold)
    assert a.add(99, 0, True, b"tail") == []  # the first marker syncs it
    return a


def test_audio_packets_are_frames_at_once() -> None:
    a = FrameAssembler(single_packet_frames=True)
    assert [f.data for f in a.add(10, 960, False, b"a")] == [b"a"]
    assert [f.data for f in a.add(11, 1920, False, b"b")] == [b"b"]


def test_audio_gap_is_skipped_without_waiting_and_late_packets_dropped() -> None:
    a = FrameAssembler(single_packet_frames=True)
    a.add(10, 0, False, b"a")
    assert [f.data for f in a.add(12, 0, False, b"c")] == [b"c"]
    assert a.add(11, 0, False, b"b") == []


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
