"""The shared assembler core with a toy codec: reordering, wrap-around, loss, caps."""

from __future__ import annotations

from dataclasses import dataclass

from sluice.media.rtp.assembly import FrameAssemblerCore, Pending

START, KEY = 0x01, 0x02  # flags in the toy payload's first byte


@dataclass(frozen=True)
class Toy:
    timestamp: int
    data: bytes
    keyframe: bool


class ToyAssembler(FrameAssemblerCore[bytes, Toy]):
    def feed(self, payload: bytes, seq: int, ts: int, marker: bool) -> Toy | None:
        return self._add(payload, seq, ts, marker)

    def _parse(self, payload: bytes) -> tuple[bytes, int]:
        return payload, len(payload)

    def _mark(self, pending: Pending[bytes], seq: int, parsed: bytes) -> None:
        if parsed[0] & START:
            pending.start = seq if pending.start is None else min(pending.start, seq)

    def _assemble(self, timestamp: int, packets: list[bytes]) -> Toy | None:
        return Toy(timestamp, b"".join(p[1:] for p in packets), bool(packets[0][0] & KEY))

    def _accept(self, frame: Toy, after_loss: bool) -> bool:
        return frame.keyframe or not after_loss


def test_reordered_packets_make_one_frame_across_the_sequence_wrap() -> None:
    a = ToyAssembler()
    assert a.feed(bytes([0]) + b"b", 0, 100, True) is None
    assert a.feed(bytes([START | KEY]) + b"a", 65535, 100, False) == Toy(100, b"ab", True)
    assert a.feed(bytes([START]) + b"c", 1, 200, True) == Toy(200, b"c", False)
    assert not a.needs_keyframe and a.pending_packets == 0


def test_a_lost_frame_waits_for_a_keyframe() -> None:
    a = ToyAssembler()
    assert a.feed(bytes([START | KEY]) + b"k", 10, 0, True) is not None
    assert a.feed(bytes([START]) + b"d", 12, 2, True) is None  # 11 never came
    assert a.needs_keyframe and a.frames_dropped == 1
    assert a.feed(bytes([START | KEY]) + b"k2", 13, 3, True) == Toy(3, b"k2", True)
    assert not a.needs_keyframe


def test_padding_fills_a_gap_and_oversized_frames_go() -> None:
    a = ToyAssembler(max_frame_bytes=4)
    assert a.feed(bytes([START | KEY]) + b"k", 1, 0, True) is not None
    assert a.feed(b"", 2, 0, False) is None  # padding in order
    assert a.feed(bytes([START]) + b"d", 3, 1, True) == Toy(1, b"d", False)
    assert a.feed(bytes([START | KEY]) + b"big!", 4, 2, True) is None
    assert a.frames_dropped == 1 and a.pending_packets == 0
