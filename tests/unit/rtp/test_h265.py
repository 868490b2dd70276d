"""H.265 over RTP: single NAL units, APs and FUs byte by byte, real libx265 output through
packetizer, assembler and FFmpeg's decoder, loss and reordering, and fuzzed hostile input."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.media.rtp.h265 import (
    MIN_MTU,
    NAL_AP,
    NAL_FU,
    NAL_PACI,
    NAL_PPS,
    NAL_SPS,
    NAL_VPS,
    START_CODE,
    H265AccessUnit,
    H265FrameAssembler,
    H265Payload,
    H265PayloadError,
    PayloadKind,
    depayload,
    nal_type,
    packetize,
    parse_payload,
    split_annex_b,
)

WIDTH, HEIGHT = 320, 240
FRAMES = 12
GOP = 4
TS_STEP = 3000  # 90 kHz / 30 fps
IDR_W_RADL, TRAIL_R = 19, 1


@dataclass(frozen=True)
class Encoded:
    data: bytes
    keyframe: bool
    colour: tuple[int, int, int]  # RGB at the centre of the source picture

    @property
    def annex_b(self) -> bytes:
        """The same NAL units, every start code four bytes long as RTP receivers write."""
        return b"".join(START_CODE + nal for nal in split_annex_b(self.data))


def source_picture(index: int) -> np.ndarray:
    """A vertical gradient whose red and blue change with every frame."""
    rgb = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
    rgb[:, :, 0] = 220 - index * 15
    rgb[:, :, 1] = (np.arange(HEIGHT) * 255 // HEIGHT)[:, None]
    rgb[:, :, 2] = (index * 20) % 256
    return rgb


@pytest.fixture(scope="module")
def stream() -> list[Encoded]:
    codec = av.CodecContext.create("libx265", "w")
    codec.width, codec.height, codec.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    codec.time_base = Fraction(1, 30)
    codec.gop_size = GOP
    # zerolatency: no B-frames or look-ahead, so one access unit per input picture.
    params = f"log-level=error:keyint={GOP}:min-keyint={GOP}:scenecut=0"
    codec.options = {"preset": "ultrafast", "tune": "zerolatency", "x265-params": params}
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
    assembler: H265FrameAssembler, packets: Iterable[tuple[int, bytes, int, bool]]
) -> list[H265AccessUnit]:
    units = []
    for seq, payload, timestamp, marker in packets:
        unit = assembler.feed(
            payload, sequence_number=seq % 65536, timestamp=timestamp, marker=marker
        )
        if unit is not None:
            units.append(unit)
    return units


def rtp_packets(
    payloads_per_unit: Sequence[list[bytes]], first_seq: int = 65500
) -> list[list[tuple[int, bytes, int, bool]]]:
    """(sequence number, payload, timestamp, marker) per packet, grouped by access unit."""
    seq, out = first_seq, []
    for index, payloads in enumerate(payloads_per_unit):
        last = len(payloads) - 1
        out.append([(seq + j, p, index * TS_STEP, j == last) for j, p in enumerate(payloads)])
        seq += len(payloads)
    return out


def decode(units: Iterable[bytes]) -> list[av.VideoFrame]:
    decoder = av.CodecContext.create("hevc", "r")
    pictures = []
    for data in units:
        pictures += decoder.decode(av.Packet(data))
    return pictures + list(decoder.decode(None))


def nal(kind: int, body: bytes = b"\xaa\xbb", tid: int = 1, layer: int = 0) -> bytes:
    return bytes([kind << 1 | layer >> 5, (layer & 0x1F) << 3 | tid]) + body


def fu(kind: int, body: bytes, *, start: bool = False, end: bool = False) -> bytes:
    return bytes([NAL_FU << 1, 1, start << 7 | end << 6 | kind]) + body


def ap(*units: bytes) -> bytes:
    return bytes([NAL_AP << 1, 1]) + b"".join(len(u).to_bytes(2, "big") + u for u in units)


# --- real encoder output ------------------------------------------------------------


def test_stream_has_keyframes_and_delta_frames(stream: list[Encoded]) -> None:
    assert len(stream) == FRAMES
    assert [e.keyframe for e in stream] == [i % GOP == 0 for i in range(FRAMES)]
    first_types = [nal_type(n) for n in split_annex_b(stream[0].data)]
    assert first_types[:3] == [NAL_VPS, NAL_SPS, NAL_PPS]


@pytest.mark.parametrize(
    ("mtu", "aggregate"), [(1200, True), (1200, False), (150, True), (7, True)]
)
def test_round_trip_through_decoder(stream: list[Encoded], mtu: int, aggregate: bool) -> None:
    payloads = [packetize(e.data, mtu=mtu, aggregate=aggregate) for e in stream]
    assert all(len(p) <= mtu for unit in payloads for p in unit)
    kinds = {parse_payload(p).kind for unit in payloads for p in unit}
    assert (PayloadKind.AGGREGATION in kinds) == (aggregate and mtu > 100)  # VPS+SPS+PPS fit
    assert PayloadKind.FRAGMENT in kinds  # the prefix SEI alone is over 1 200 bytes

    units = feed_all(H265FrameAssembler(), (p for u in rtp_packets(payloads) for p in u))

    assert [u.data for u in units] == [e.annex_b for e in stream]
    assert [u.keyframe for u in units] == [e.keyframe for e in stream]
    assert [u.has_parameter_sets for u in units] == [e.keyframe for e in stream]
    # The aiortc-shaped per-packet path gives the same bytes.
    assert [b"".join(depayload(p) for p in unit) for unit in payloads] == [u.data for u in units]
    pictures = decode(u.data for u in units)
    assert len(pictures) == FRAMES
    for picture, encoded in zip(pictures, stream, strict=True):
        assert (picture.width, picture.height) == (WIDTH, HEIGHT)
        centre = picture.to_ndarray(format="rgb24")[HEIGHT // 2, WIDTH // 2].astype(int)
        assert np.abs(centre - np.array(encoded.colour)).max() <= 12


def test_packets_reordered_within_access_units(stream: list[Encoded]) -> None:
    shuffled = []
    rng = random.Random(3)
    for unit in rtp_packets([packetize(e.data, mtu=80) for e in stream]):
        rng.shuffle(unit)
        shuffled += unit

    units = feed_all(H265FrameAssembler(), shuffled)

    assert [u.data for u in units] == [e.annex_b for e in stream]


def test_lost_middle_fragment_drops_frames_until_keyframe(stream: list[Encoded]) -> None:
    packets = rtp_packets([packetize(e.data, mtu=100) for e in stream])
    assert len(packets[1]) >= 3
    del packets[1][1]  # a middle FU of the first delta frame
    assembler = H265FrameAssembler()

    rest = feed_all(assembler, (p for unit in packets for p in unit))

    assert [u.timestamp // TS_STEP for u in rest] == [0, *range(4, FRAMES)]
    assert assembler.frames_dropped == 3
    assert assembler.pending_packets == 0
    assert len(decode(u.data for u in rest)) == FRAMES - 3


def test_lost_first_fragment_of_a_keyframe_waits_for_the_next(stream: list[Encoded]) -> None:
    packets = rtp_packets([packetize(e.data, mtu=1200) for e in stream])
    del packets[0][0]  # the AP with VPS, SPS, PPS: the rest cannot open the access unit
    units = feed_all(H265FrameAssembler(), (p for unit in packets for p in unit))
    assert units[0].timestamp == 4 * TS_STEP and units[0].keyframe


def test_resync_needs_parameter_sets_once() -> None:
    idr = nal(IDR_W_RADL, b"\x80\x11")  # first_slice_segment_in_pic_flag set
    trail = nal(TRAIL_R, b"\x80\x22")
    params = [nal(NAL_VPS), nal(NAL_SPS), nal(NAL_PPS)]
    assembler = H265FrameAssembler()
    assert assembler.feed(idr, sequence_number=1, timestamp=0, marker=True) is None
    unit = assembler.feed(ap(*params, idr), sequence_number=2, timestamp=1, marker=True)
    assert unit is not None and unit.keyframe and unit.has_parameter_sets
    assert unit.nal_types == (NAL_VPS, NAL_SPS, NAL_PPS, IDR_W_RADL)
    assert assembler.feed(trail, sequence_number=4, timestamp=3, marker=True) is None  # gap
    unit = assembler.feed(idr, sequence_number=5, timestamp=4, marker=True)  # known sets
    assert unit is not None and unit.data == START_CODE + idr


def test_fu_start_middle_end() -> None:
    body = b"\x80" + bytes(range(1, 30))  # first_slice_segment_in_pic_flag set
    whole = nal(IDR_W_RADL, body, tid=2, layer=0)
    start, middle, end = body[:10], body[10:20], body[20:]
    p_start = bytes([NAL_FU << 1, 2, 0x80 | IDR_W_RADL]) + start
    p_middle = bytes([NAL_FU << 1, 2, IDR_W_RADL]) + middle
    p_end = bytes([NAL_FU << 1, 2, 0x40 | IDR_W_RADL]) + end

    first = parse_payload(p_start)
    assert first == H265Payload(PayloadKind.FRAGMENT, (), whole[:12], IDR_W_RADL, True, False)
    assert parse_payload(p_middle).fragment == middle
    assert parse_payload(p_end).fu_end
    assert depayload(p_start) + depayload(p_middle) + depayload(p_end) == START_CODE + whole
    assert first.begins_access_unit()

    assembler = H265FrameAssembler()
    params = ap(nal(NAL_VPS), nal(NAL_SPS), nal(NAL_PPS))
    assert assembler.feed(params, sequence_number=0, timestamp=0, marker=False) is None
    assert assembler.feed(p_end, sequence_number=3, timestamp=0, marker=True) is None
    assert assembler.feed(p_start, sequence_number=1, timestamp=0, marker=False) is None
    unit = assembler.feed(p_middle, sequence_number=2, timestamp=0, marker=False)
    assert unit is not None
    assert unit.data.endswith(START_CODE + whole)
    assert unit.nal_types == (NAL_VPS, NAL_SPS, NAL_PPS, IDR_W_RADL)


def test_ap_with_several_nal_units() -> None:
    units = [nal(NAL_VPS, b"\x01"), nal(NAL_SPS, b"\x02\x03"), nal(NAL_PPS, b"\x04" * 5)]
    parsed = parse_payload(ap(*units))
    assert parsed.kind is PayloadKind.AGGREGATION
    assert parsed.nal_units == tuple(units)
    assert parsed.annex_b() == b"".join(START_CODE + u for u in units)


def test_packetizer_ap_header_takes_lowest_layer_and_tid() -> None:
    units = [nal(NAL_VPS, tid=3, layer=2), nal(NAL_SPS, tid=2, layer=5)]
    (payload,) = packetize(b"".join(START_CODE + u for u in units), mtu=100)
    assert payload[:2] == nal(NAL_AP, b"", tid=2, layer=2)
    assert parse_payload(payload).nal_units == tuple(units)


def test_single_nal_unit_and_paci() -> None:
    single = nal(TRAIL_R, b"\x80\x01")
    assert parse_payload(single) == H265Payload(PayloadKind.SINGLE, (single,))
    assert depayload(single) == START_CODE + single
    paci = nal(NAL_PACI, b"\x00\x00" + single)
    assert parse_payload(paci).kind is PayloadKind.PACI and depayload(paci) == b""


def test_fu_out_of_order_inside_a_contiguous_unit_is_dropped() -> None:
    assembler = H265FrameAssembler()
    params = ap(nal(NAL_VPS), nal(NAL_SPS), nal(NAL_PPS))
    assert assembler.feed(params, sequence_number=0, timestamp=0, marker=False) is None
    mid = fu(IDR_W_RADL, b"\x11")  # no S before it
    assert assembler.feed(mid, sequence_number=1, timestamp=0, marker=True) is None
    assert assembler.frames_dropped == 1 and assembler.needs_keyframe


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x02",  # one byte
        b"\x82\x01",  # forbidden_zero_bit
        b"\x02\x00",  # TID 0
        bytes([51 << 1, 1, 0]),  # unspecified type
        bytes([63 << 1, 1, 0]),
        ap()[:2],  # AP without units
        ap()[:2] + b"\x00",  # truncated size
        ap()[:2] + b"\x00\x05\x02\x01",  # size past the end
        ap(b""),  # zero-length unit
        ap(nal(NAL_AP)),  # nested AP
        ap(b"\x82\x01\x00"),  # aggregated unit with F set
        fu(IDR_W_RADL, b""),  # FU without data
        bytes([NAL_FU << 1, 1]),  # FU without FU header
        fu(IDR_W_RADL, b"\x01", start=True, end=True),
        fu(NAL_FU, b"\x01", start=True),
    ],
)
def test_malformed_payloads(payload: bytes) -> None:
    with pytest.raises(H265PayloadError):
        parse_payload(payload)


def test_oversized_unit_is_dropped(stream: list[Encoded]) -> None:
    assembler = H265FrameAssembler(max_frame_bytes=1000)
    assert feed_all(assembler, rtp_packets([packetize(stream[0].data, mtu=100)])[0]) == []
    assert assembler.frames_dropped == 1 and assembler.pending_packets == 0


def test_pending_packets_are_capped() -> None:
    assembler = H265FrameAssembler(max_pending_packets=50)
    for seq in range(500):  # never a marker: nothing completes
        assembler.feed(nal(NAL_VPS), sequence_number=seq, timestamp=seq // 3, marker=False)
        assert assembler.pending_packets <= 50
    assert assembler.frames_dropped >= 100


def test_split_annex_b_and_packetize_errors() -> None:
    assert split_annex_b(b"\x00\x00\x01\x02\x01\x00\x00\x00\x00\x01\x04\x01\x00") == [
        b"\x02\x01",
        b"\x04\x01",
    ]
    with pytest.raises(ValueError):
        split_annex_b(b"\x02\x01")
    with pytest.raises(ValueError):
        packetize(START_CODE + nal(TRAIL_R), mtu=MIN_MTU - 1)
    with pytest.raises(ValueError):
        packetize(START_CODE + b"\x02")


# --- fuzzing ------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_arbitrary_payloads_raise_only_the_documented_error(payload: bytes) -> None:
    with contextlib.suppress(H265PayloadError):
        parse_payload(payload).annex_b()


packets = st.tuples(
    st.one_of(
        st.binary(max_size=30),
        st.builds(
            fu, st.integers(0, 47), st.binary(max_size=8), start=st.booleans(), end=st.booleans()
        ),
        st.builds(
            lambda k, b: nal(k, b), st.sampled_from([1, 19, 32, 33, 34, 39]), st.binary(max_size=8)
        ),
    ),
    st.integers(0, 65535),
    st.integers(0, 8),
    st.booleans(),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(packets, max_size=60))
def test_arbitrary_packet_streams_never_crash_the_assembler(
    stream: list[tuple[bytes, int, int, bool]],
) -> None:
    assembler = H265FrameAssembler(max_frame_bytes=200, max_pending_packets=16)
    for payload, seq, timestamp, marker in stream:
        try:
            unit = assembler.feed(payload, sequence_number=seq, timestamp=timestamp, marker=marker)
        except H265PayloadError:
            continue
        assert assembler.pending_packets <= 16
        assert unit is None or len(unit.data) <= 200


def escape(body: bytes) -> bytes:
    """Emulation prevention, as an encoder writes it: no start code inside a NAL unit."""
    out, zeros = bytearray(), 0
    for byte in body:
        if zeros >= 2 and byte <= 3:
            out.append(3)
            zeros = 0
        out.append(byte)
        zeros = zeros + 1 if byte == 0 else 0
    return bytes(out) + (b"\x80" if out.endswith(b"\x00") or not out else b"")


# NAL units that cannot open an access unit: slices after the first (flag clear), EOS,
# EOB, filler, suffix SEI, reserved.
NOT_OPENERS = [*range(32), 36, 37, 38, 40, 45, 46, 47]
nal_units = st.builds(
    lambda kind, tid, body: nal(kind, escape((b"\x01" if kind < 32 else b"") + body), tid=tid),
    st.sampled_from(NOT_OPENERS),
    st.integers(1, 7),
    st.binary(max_size=400),
)


@settings(max_examples=150, deadline=None)
@given(
    units=st.lists(nal_units, min_size=1, max_size=6),
    mtu=st.integers(MIN_MTU, 1500),
    aggregate=st.booleans(),
    short_codes=st.booleans(),
    first_seq=st.integers(0, 65535),
    reverse=st.booleans(),
)
def test_arbitrary_access_units_round_trip(
    units: list[bytes],
    mtu: int,
    aggregate: bool,
    short_codes: bool,
    first_seq: int,
    reverse: bool,
) -> None:
    # Parameter sets and a picture's first slice open the unit, as an encoder writes it.
    units = [nal(NAL_VPS), nal(NAL_SPS), nal(NAL_PPS), nal(IDR_W_RADL, b"\x80"), *units]
    code = b"\x00\x00\x01" if short_codes else START_CODE
    payloads = packetize(b"".join(code + u for u in units), mtu=mtu, aggregate=aggregate)
    assert all(len(p) <= mtu for p in payloads)
    expected = b"".join(START_CODE + u for u in units)
    assert b"".join(depayload(p) for p in payloads) == expected

    (packets,) = rtp_packets([payloads], first_seq)
    assembled = feed_all(H265FrameAssembler(), reversed(packets) if reverse else packets)
    assert [(u.data, u.keyframe) for u in assembled] == [(expected, True)]
    assert assembled[0].nal_types == tuple(nal_type(u) for u in units)
