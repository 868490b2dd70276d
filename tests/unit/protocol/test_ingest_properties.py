"""Reassembler + playout buffer, as the ingest pipeline chains them, under any chunking.

A reader feeds payloads while the buffer has room, a paced sender pops one frame per
tick; hypothesis picks the payload sizes (splits inside samples and frames, empty
end-of-segment markers) and the interleaving of reads and ticks.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from sluice.wire.packet import MAX_MESSAGE_BYTES
from worker.protocol.pcm import FRAME_BYTES, PcmReassembler
from worker.protocol.playout import PlayoutBuffer

MAX_PAYLOAD = MAX_MESSAGE_BYTES - 4  # tag + 3-byte length varint
FRAMES_PER_MESSAGE = (MAX_PAYLOAD + FRAME_BYTES - 1) // FRAME_BYTES  # 9, with carry-over


def padded(segment: bytes) -> bytes:
    """What a segment becomes on the track: padded with silence to whole frames."""
    return segment + bytes(-len(segment) % FRAME_BYTES)


def run_ingest(
    payloads: list[bytes], capacity_s: float, ticks_first: st.DataObject
) -> tuple[bytes, PlayoutBuffer]:
    """Plays `payloads` through the chain; returns the audio popped and the buffer."""
    reassembler = PcmReassembler()
    buffer = PlayoutBuffer(capacity_s=capacity_s)
    out = bytearray()

    def tick() -> None:
        had_audio = buffer.depth_frames > 0
        frame = buffer.pop()
        if had_audio:
            out.extend(frame)

    pending = list(payloads)
    while pending:
        if buffer.has_room() and not ticks_first.draw(st.booleans(), label="tick"):
            payload = pending.pop(0)
            frames = reassembler.feed(payload)
            for frame in frames:
                buffer.push(frame)
            if not payload:
                buffer.mark_end_of_segment()
            # The reader only reads with room, so one message's frames bound the overshoot.
            assert buffer.depth_frames <= buffer.capacity_frames - 1 + len(frames)
        else:
            tick()
    # The endpoint closed: the last partial frame still plays.
    last = reassembler.flush()
    if last is not None:
        buffer.push(last)
    buffer.close()
    while not buffer.drained:
        tick()
    return bytes(out), buffer


def expected_audio(payloads: list[bytes]) -> bytes:
    segments: list[bytes] = []
    current = bytearray()
    for payload in payloads:
        if payload:
            current.extend(payload)
        else:
            segments.append(bytes(current))
            current.clear()
    segments.append(bytes(current))
    return b"".join(padded(segment) for segment in segments)


def make_payloads(sizes: list[int], seed: int) -> list[bytes]:
    """Random PCM cut at the given sizes; a size of 0 is an end-of-segment marker."""
    rng = random.Random(seed)
    return [rng.randbytes(size) for size in sizes]


seeds = st.integers(0, 2**32)


@settings(deadline=None, max_examples=150)
@given(
    st.lists(st.integers(0, 9_000), max_size=20),
    seeds,
    st.sampled_from([0.02, 0.1, 1.0, 60.0]),
    st.data(),
)
def test_pcm_out_equals_pcm_in(
    sizes: list[int], seed: int, capacity_s: float, data: st.DataObject
) -> None:
    payloads = make_payloads(sizes, seed)
    out, buffer = run_ingest(payloads, capacity_s, data)
    assert out == expected_audio(payloads)
    assert buffer.played_frames * FRAME_BYTES == len(out)
    assert buffer.pushed_frames == buffer.played_frames


@settings(deadline=None, max_examples=50)
@given(st.lists(st.integers(0, MAX_PAYLOAD), max_size=20), seeds, st.data())
def test_largest_messages_overshoot_by_a_bounded_amount(
    sizes: list[int], seed: int, data: st.DataObject
) -> None:
    payloads = make_payloads(sizes, seed)
    out, buffer = run_ingest(payloads, 0.1, data)
    assert out == expected_audio(payloads)
    # One message read with the last free slot, then the padded frame flushed at close.
    assert buffer.max_depth_frames <= buffer.capacity_frames - 1 + FRAMES_PER_MESSAGE + 1


@settings(deadline=None)
@given(st.lists(st.integers(1, 5_000), max_size=20))
def test_no_underrun_when_a_burst_arrives_before_playout(sizes: list[int]) -> None:
    # Text-to-speech style: a whole utterance, then its marker, then real-time playout.
    reassembler = PcmReassembler()
    buffer = PlayoutBuffer()
    for size in [*sizes, 0]:
        for frame in reassembler.feed(bytes(size)):
            buffer.push(frame)
    buffer.mark_end_of_segment()
    frames = buffer.depth_frames
    for _ in range(frames + 10):
        buffer.pop()
    assert frames * FRAME_BYTES == len(padded(bytes(sum(sizes))))
    assert buffer.underruns == 0
