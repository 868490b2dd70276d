"""VP9 over RTP: descriptors byte by byte, real libvpx-vp9 output through packetizer,
assembler and FFmpeg's decoder, loss and reordering, and fuzzed hostile input."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.media.rtp.vp9 import (
    MIN_MTU,
    PICTURE_ID_MOD,
    Vp9Descriptor,
    Vp9Frame,
    Vp9FrameAssembler,
    Vp9FrameHeader,
    Vp9Packetizer,
    Vp9PayloadError,
    Vp9PictureGroupEntry,
    Vp9ScalabilityStructure,
    depayload,
    packetize,
    parse_frame_header,
    parse_payload,
)

WIDTH, HEIGHT = 320, 240
FRAMES = 12
GOP = 4
TS_STEP = 3000  # 90 kHz / 30 fps


@dataclass(frozen=True)
class Encoded:
    data: bytes
    keyframe: bool
    colour: tuple[int, int, int]  # RGB at the centre of the source picture


def source_picture(index: int) -> np.ndarray:
    """A horizontal gradient whose red and blue change with every frame."""
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rgb[:, :, 0] = (index * 20) % 256
    rgb[:, :, 1] = (np.arange(WIDTH) * 255 // WIDTH)[None, :]
    rgb[:, :, 2] = 200 - index * 10
    return rgb


@pytest.fixture(scope="module")
def stream() -> list[Encoded]:
    codec = av.CodecContext.create("libvpx-vp9", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.gop_size = GOP
    # Realtime without look-ahead: one packet per input frame, no hidden alt-ref frames.
    codec.options = {"deadline": "realtime", "cpu-used": "8", "lag-in-frames": "0"}
    out: list[Encoded] = []
    for i in range(FRAMES):
        picture = source_picture(i)
        frame = av.VideoFrame.from_ndarray(picture, format="rgb24").reformat(format="yuv420p")
        frame.pts = i
        r, g, b = (int(c) for c in picture[HEIGHT // 2, WIDTH // 2])
        for packet in codec.encode(frame):
            out.append(Encoded(bytes(packet), packet.is_keyframe, (r, g, b)))
    assert not list(codec.encode(None))
    return out


def feed_all(
    assembler: Vp9FrameAssembler,
    packets: Iterable[tuple[int, bytes, int, bool]],
) -> list[Vp9Frame]:
    frames = []
    for seq, payload, timestamp, marker in packets:
        frame = assembler.feed(
            payload, sequence_number=seq % 65536, timestamp=timestamp, marker=marker
        )
        if frame is not None:
            frames.append(frame)
    return frames


def rtp_packets(
    payloads_per_frame: Sequence[list[bytes]], first_seq: int = 65500
) -> list[list[tuple[int, bytes, int, bool]]]:
    """(sequence number, payload, timestamp, marker) per packet, grouped by frame."""
    seq, out = first_seq, []
    for index, payloads in enumerate(payloads_per_frame):
        last = len(payloads) - 1
        out.append([(seq + j, p, index * TS_STEP, j == last) for j, p in enumerate(payloads)])
        seq += len(payloads)
    return out


def decode(frames: Iterable[bytes]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("vp9", "r")
    pictures = []
    for data in frames:
        pictures += decoder.decode(av.Packet(data))
    return pictures + list(decoder.decode(None))


# --- real encoder output ------------------------------------------------------------


def test_stream_has_keyframes_and_delta_frames(stream: list[Encoded]) -> None:
    assert len(stream) == FRAMES
    assert [e.keyframe for e in stream] == [i % GOP == 0 for i in range(FRAMES)]
    assert [parse_frame_header(e.data).keyframe for e in stream] == [e.keyframe for e in stream]
    assert parse_frame_header(stream[0].data) == Vp9FrameHeader(True, False, WIDTH, HEIGHT)


@pytest.mark.parametrize("mtu", [1200, 300, 40, MIN_MTU])
def test_round_trip_through_decoder(stream: list[Encoded], mtu: int) -> None:
    packetizer = Vp9Packetizer(picture_id=PICTURE_ID_MOD - 3, mtu=mtu)
    payloads = [packetizer.packetize(e.data) for e in stream]
    assert all(len(p) <= mtu for frame in payloads for p in frame)
    if mtu < 300:
        assert all(len(frame) > 1 for frame in payloads)

    frames = feed_all(Vp9FrameAssembler(), (p for f in rtp_packets(payloads) for p in f))

    assert [f.data for f in frames] == [e.data for e in stream]
    assert [f.keyframe for f in frames] == [e.keyframe for e in stream]
    assert [f.picture_id for f in frames][2:5] == [PICTURE_ID_MOD - 1, 0, 1]  # wraps
    assert {(f.width, f.height) for f in frames} == {(WIDTH, HEIGHT)}
    pictures = decode(f.data for f in frames)
    assert len(pictures) == FRAMES
    for picture, encoded in zip(pictures, stream, strict=True):
        assert (picture.width, picture.height) == (WIDTH, HEIGHT)
        centre = picture.to_ndarray(format="rgb24")[HEIGHT // 2, WIDTH // 2].astype(int)
        assert np.abs(centre - np.array(encoded.colour)).max() <= 12


def test_packets_reordered_within_frames(stream: list[Encoded]) -> None:
    payloads = [packetize(e.data, picture_id=i, mtu=60) for i, e in enumerate(stream)]
    shuffled = []
    rng = random.Random(7)
    for frame in rtp_packets(payloads):
        rng.shuffle(frame)
        shuffled += frame

    frames = feed_all(Vp9FrameAssembler(), shuffled)

    assert [f.data for f in frames] == [e.data for e in stream]


def test_lost_middle_fragment_drops_frames_until_keyframe(stream: list[Encoded]) -> None:
    packets = rtp_packets([packetize(e.data, picture_id=i, mtu=100) for i, e in enumerate(stream)])
    assert len(packets[1]) >= 3
    del packets[1][1]  # a middle fragment of the first delta frame
    assembler = Vp9FrameAssembler()

    first = feed_all(assembler, packets[0])
    assert [f.timestamp for f in first] == [0]
    assert not assembler.needs_keyframe
    rest = feed_all(assembler, (p for frame in packets[1:] for p in frame))

    # Frame 1 is incomplete; 2 and 3 reference it; keyframe 4 recovers.
    assert [f.timestamp // TS_STEP for f in rest] == list(range(4, FRAMES))
    assert assembler.frames_dropped == 3
    assert assembler.pending_packets == 0
    assert len(decode([first[0].data] + [f.data for f in rest])) == FRAMES - 3


def test_needs_keyframe_after_a_lost_frame(stream: list[Encoded]) -> None:
    packets = rtp_packets([packetize(e.data, picture_id=i) for i, e in enumerate(stream)])
    assembler = Vp9FrameAssembler()
    feed_all(assembler, packets[0])
    feed_all(assembler, packets[2])  # frame 1 never arrives
    assert assembler.needs_keyframe
    assert feed_all(assembler, packets[4])[0].keyframe
    assert not assembler.needs_keyframe


def test_first_frame_must_be_a_keyframe(stream: list[Encoded]) -> None:
    packets = rtp_packets([packetize(e.data, picture_id=i) for i, e in enumerate(stream)])
    assembler = Vp9FrameAssembler()
    assert feed_all(assembler, packets[1] + packets[2]) == []
    assert assembler.needs_keyframe


def test_padding_fills_the_gap_and_duplicates_are_ignored(stream: list[Encoded]) -> None:
    p0 = packetize(stream[0].data, picture_id=0)
    p1 = packetize(stream[1].data, picture_id=1)
    assembler = Vp9FrameAssembler()
    assert assembler.feed(p0[0], sequence_number=10, timestamp=0, marker=True) is not None
    assert assembler.feed(p0[0], sequence_number=10, timestamp=0, marker=True) is None
    assert assembler.feed(b"", sequence_number=11, timestamp=0, marker=False) is None
    frame = assembler.feed(p1[0], sequence_number=12, timestamp=TS_STEP, marker=True)
    assert frame is not None and frame.data == stream[1].data


def test_two_spatial_layers_get_a_superframe_index(stream: list[Encoded]) -> None:
    layer = Vp9Descriptor(picture_id=5, temporal_id=0, tl0_pic_idx=0)
    base = bytes(layer) + stream[0].data
    upper = bytes(replace(layer, spatial_id=1, inter_layer=True))
    assembler = Vp9FrameAssembler()
    assert (
        assembler.feed(upper + stream[1].data, sequence_number=2, timestamp=0, marker=True) is None
    )
    frame = assembler.feed(base, sequence_number=1, timestamp=0, marker=False)

    assert frame is not None and frame.keyframe
    sizes = len(stream[0].data), len(stream[1].data)
    mag = 2 if max(sizes) < 65536 else 3
    marker = bytes([0xC0 | (mag - 1) << 3 | 1])
    index = marker + b"".join(s.to_bytes(mag, "little") for s in sizes) + marker
    assert frame.data == stream[0].data + stream[1].data + index
    assert len(decode([frame.data])) == 2  # FFmpeg splits it into its two frames


def test_oversized_frame_is_dropped(stream: list[Encoded]) -> None:
    assembler = Vp9FrameAssembler(max_frame_bytes=len(stream[0].data) - 1)
    packets = rtp_packets([packetize(stream[0].data, picture_id=0, mtu=100)])
    assert feed_all(assembler, packets[0]) == []
    assert assembler.frames_dropped == 1 and assembler.pending_packets == 0


def test_pending_packets_are_capped() -> None:
    assembler = Vp9FrameAssembler(max_pending_packets=50)
    for seq in range(500):  # never a marker: nothing completes
        payload = bytes(Vp9Descriptor(start_of_frame=seq % 2 == 0, end_of_frame=False)) + b"x"
        assembler.feed(payload, sequence_number=seq, timestamp=seq // 2, marker=False)
        assert assembler.pending_packets <= 50
    assert assembler.frames_dropped >= 200


# --- descriptors, byte by byte ------------------------------------------------------


def test_minimal_descriptor() -> None:
    descriptor, data = parse_payload(b"\x0c\x82")  # B, E
    assert descriptor == Vp9Descriptor()
    assert data == b"\x82"
    assert depayload(b"\x0c\x82") == b"\x82"


def test_short_picture_id_and_z() -> None:
    descriptor, data = parse_payload(bytes([0b1100_1001, 0x7F, 0xAA]))  # I P B Z
    assert descriptor.picture_id == 0x7F and not descriptor.long_picture_id
    assert descriptor.inter_picture and descriptor.not_upper_reference
    assert not descriptor.end_of_frame
    assert data == b"\xaa"


def test_long_picture_id() -> None:
    descriptor, _ = parse_payload(bytes([0b1000_0100, 0x80 | 0x12, 0x34, 0]))  # I E
    assert descriptor.picture_id == 0x1234 and descriptor.long_picture_id
    assert not descriptor.start_of_frame and descriptor.end_of_frame


def test_non_flexible_layer_indices_and_tl0picidx() -> None:
    # I L B; picture 300; TID 5 U SID 3 D; TL0PICIDX 200
    payload = bytes([0b1010_1000, 0x81, 0x2C, 0b101_1_011_1, 200, 0xEE])
    descriptor, data = parse_payload(payload)
    assert (descriptor.temporal_id, descriptor.spatial_id, descriptor.tl0_pic_idx) == (5, 3, 200)
    assert descriptor.switching_up and descriptor.inter_layer and not descriptor.flexible
    assert data == b"\xee"
    assert bytes(descriptor) == payload[:-1]


def test_flexible_mode_with_reference_indices() -> None:
    # I P L F B E; picture 7 (short); TID 1 SID 0; P_DIFF 1, 2, 127 (N on all but last)
    payload = bytes([0b1111_1100, 7, 0b001_0_000_0, 1 << 1 | 1, 2 << 1 | 1, 127 << 1, 0x55])
    descriptor, data = parse_payload(payload)
    assert descriptor.flexible and descriptor.p_diffs == (1, 2, 127)
    assert descriptor.tl0_pic_idx is None  # no TL0PICIDX in flexible mode
    assert data == b"\x55"
    assert bytes(descriptor) == payload[:-1]


def test_flexible_mode_without_p_has_no_reference_indices() -> None:
    descriptor, data = parse_payload(bytes([0b0001_1100, 3]))  # F B E
    assert descriptor.flexible and descriptor.p_diffs == () and data == b"\x03"


def test_scalability_structure_with_resolutions_and_picture_group() -> None:
    ss = bytes([0b010_1_1_000])  # N_S=2, Y, G
    ss += b"".join(w.to_bytes(2, "big") + h.to_bytes(2, "big") for w, h in
                   [(320, 180), (640, 360), (1280, 720)])  # fmt: skip
    ss += bytes([2, 0b000_0_01_00, 1, 0b001_1_10_00, 1, 2])  # N_G=2; (TID0,R1) (TID1,U,R2)
    payload = bytes([0b1000_1110, 0x80, 0x01]) + ss + b"\x82"  # I B E V
    descriptor, data = parse_payload(payload)
    assert descriptor.scalability == Vp9ScalabilityStructure(
        spatial_layers=3,
        resolutions=((320, 180), (640, 360), (1280, 720)),
        picture_group=(Vp9PictureGroupEntry(0, False, (1,)), Vp9PictureGroupEntry(1, True, (1, 2))),
    )
    assert data == b"\x82"
    assert bytes(descriptor) == payload[:-1]


def test_scalability_structure_without_resolutions_or_group() -> None:
    descriptor, _ = parse_payload(bytes([0b0000_1110, 0b001_0_0_000, 0x82]))
    assert descriptor.scalability == Vp9ScalabilityStructure(2, None, None)


def test_packetizer_descriptors(stream: list[Encoded]) -> None:
    key = [parse_payload(p)[0] for p in packetize(stream[0].data, picture_id=9, mtu=200)]
    assert [(d.start_of_frame, d.end_of_frame) for d in key] == (
        [(True, False)] + [(False, False)] * (len(key) - 2) + [(False, True)]
    )
    assert {(d.picture_id, d.long_picture_id, d.inter_picture, d.flexible) for d in key} == {
        (9, True, False, False)
    }
    assert key[0].scalability == Vp9ScalabilityStructure(
        1, ((WIDTH, HEIGHT),), (Vp9PictureGroupEntry(0, False, (1,)),)
    )
    assert all(d.scalability is None for d in key[1:])
    (delta,) = [parse_payload(p)[0] for p in packetize(stream[1].data, picture_id=10)]
    assert delta.inter_picture and delta.scalability is None
    assert delta.start_of_frame and delta.end_of_frame


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x0c",  # no VP9 data
        b"\x8c",  # I without picture ID
        b"\x8c\x80",  # M without its second byte
        b"\x2c",  # L without layer byte
        b"\x2c\x00",  # non-flexible L without TL0PICIDX
        b"\x5c\x03\x03\x03\x00",  # four P_DIFF
        b"\x5c",  # P F without P_DIFF
        b"\x0e",  # V without SS
        b"\x0e\x10\x00\x01\x00",  # Y with a truncated resolution
        b"\x0e\x08\x02\x04\x01",  # G: second entry missing
        b"\x0e\x08\x01\x08\x01",  # G: R=2 with one P_DIFF and no data
    ],
)
def test_malformed_descriptors(payload: bytes) -> None:
    with pytest.raises(Vp9PayloadError):
        parse_payload(payload)


def test_frame_header_variants() -> None:
    assert parse_frame_header(bytes([0b10_0_0_0_1_1_0])) == Vp9FrameHeader(keyframe=False)
    existing = parse_frame_header(bytes([0b10_0_0_1_000]))
    assert existing.show_existing_frame and not existing.keyframe
    # Profile 1, keyframe, shown; sync code; BT.601, studio range, 4:4:4, reserved; 64x48.
    bits = "10 1 0 0 0 1 0" + f"{0x498342:024b}" + "001 0 0 0 0" + f"{63:016b}{47:016b}"
    bits = bits.replace(" ", "")
    key = int(bits.ljust(-(-len(bits) // 8) * 8, "0"), 2).to_bytes(-(-len(bits) // 8), "big")
    header = parse_frame_header(key)
    assert (header.keyframe, header.width, header.height) == (True, 64, 48)
    for bad in (b"", b"\x02", bytes([0x82, 0x49, 0x83, 0x41]), bytes([0x82, 0x49, 0x83, 0x42])):
        with pytest.raises(Vp9PayloadError):
            parse_frame_header(bad)


@pytest.mark.parametrize("mtu", [0, MIN_MTU - 1])
def test_packetize_refuses_tiny_mtu(stream: list[Encoded], mtu: int) -> None:
    with pytest.raises(ValueError):
        packetize(stream[0].data, picture_id=0, mtu=mtu)


# --- fuzzing ------------------------------------------------------------------------


small = st.integers(min_value=0, max_value=7)
entries = st.builds(
    Vp9PictureGroupEntry,
    temporal_id=small,
    switching_up=st.booleans(),
    p_diffs=st.lists(st.integers(0, 255), max_size=3).map(tuple),
)


@st.composite
def descriptors(draw: st.DrawFn) -> Vp9Descriptor:
    flexible, inter = draw(st.booleans()), draw(st.booleans())
    layered = draw(st.booleans())
    long_id = draw(st.booleans())
    layers = draw(st.integers(1, 8))
    ss = draw(
        st.none()
        | st.builds(
            Vp9ScalabilityStructure,
            spatial_layers=st.just(layers),
            resolutions=st.none()
            | st.lists(
                st.tuples(st.integers(0, 65535), st.integers(0, 65535)),
                min_size=layers,
                max_size=layers,
            ).map(tuple),
            picture_group=st.none() | st.lists(entries, max_size=4).map(tuple),
        )
    )
    return Vp9Descriptor(
        start_of_frame=draw(st.booleans()),
        end_of_frame=draw(st.booleans()),
        inter_picture=inter,
        flexible=flexible,
        not_upper_reference=draw(st.booleans()),
        picture_id=draw(st.none() | st.integers(0, (1 << 15 if long_id else 1 << 7) - 1)),
        long_picture_id=long_id,
        temporal_id=draw(small) if layered else None,
        switching_up=layered and draw(st.booleans()),
        spatial_id=draw(small) if layered else 0,
        inter_layer=layered and draw(st.booleans()),
        tl0_pic_idx=draw(st.integers(0, 255)) if layered and not flexible else None,
        p_diffs=tuple(draw(st.lists(st.integers(0, 127), min_size=1, max_size=3)))
        if flexible and inter
        else (),
        scalability=ss,
    )


@settings(max_examples=300, deadline=None)
@given(descriptors(), st.binary(min_size=1, max_size=20))
def test_descriptor_round_trip(descriptor: Vp9Descriptor, data: bytes) -> None:
    parsed, rest = parse_payload(bytes(descriptor) + data)
    if descriptor.picture_id is None:  # M is not on the wire without a picture ID
        parsed = replace(parsed, long_picture_id=descriptor.long_picture_id)
    assert (parsed, rest) == (descriptor, data)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_payloads_raise_only_the_documented_error(payload: bytes) -> None:
    with contextlib.suppress(Vp9PayloadError):
        parse_payload(payload)
    with contextlib.suppress(Vp9PayloadError):
        parse_frame_header(payload)


packets = st.tuples(st.binary(max_size=40), st.integers(0, 65535), st.integers(0, 8), st.booleans())


@settings(max_examples=300, deadline=None)
@given(st.lists(packets, max_size=60))
def test_arbitrary_packet_streams_never_crash_the_assembler(
    stream: list[tuple[bytes, int, int, bool]],
) -> None:
    assembler = Vp9FrameAssembler(max_frame_bytes=200, max_pending_packets=16)
    for payload, seq, timestamp, marker in stream:
        try:
            frame = assembler.feed(payload, sequence_number=seq, timestamp=timestamp, marker=marker)
        except Vp9PayloadError:
            continue
        assert assembler.pending_packets <= 16
        assert frame is None or len(frame.data) <= 200


@settings(max_examples=150, deadline=None)
@given(
    key_tail=st.binary(max_size=3000),
    deltas=st.lists(st.binary(min_size=0, max_size=3000), min_size=1, max_size=3),
    mtu=st.integers(MIN_MTU, 1500),
    picture_id=st.integers(0, PICTURE_ID_MOD - 1),
    first_seq=st.integers(0, 65535),
    reverse=st.booleans(),
)
def test_arbitrary_frames_round_trip(
    stream: list[Encoded],
    key_tail: bytes,
    deltas: list[bytes],
    mtu: int,
    picture_id: int,
    first_seq: int,
    reverse: bool,
) -> None:
    # A real keyframe header (its size included) opens the stream; the deltas are any
    # bytes behind a non-key frame marker.
    frames = [stream[0].data[:16] + key_tail] + [b"\x86" + d for d in deltas]
    packetizer = Vp9Packetizer(picture_id, mtu)
    payloads = [packetizer.packetize(f) for f in frames]
    assert all(len(p) <= mtu for frame in payloads for p in frame)
    grouped = rtp_packets(payloads, first_seq)
    ordered = [p for frame in grouped for p in (reversed(frame) if reverse else frame)]
    assembled = feed_all(Vp9FrameAssembler(), ordered)
    assert [f.data for f in assembled] == frames
    assert [f.keyframe for f in assembled] == [True] + [False] * len(deltas)
    assert [f.picture_id for f in assembled] == [
        (picture_id + i) % PICTURE_ID_MOD for i in range(len(frames))
    ]
