"""The media layer's public types: encoded frames as a receiver tap delivers them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Codec:
    name: str  # as in SDP: "opus", "VP8", "H264"
    mime_type: str
    clock_rate: int
    payload_type: int


@dataclass(frozen=True, slots=True)
class EncodedFrame:
    """One whole encoded frame as the publisher's encoder produced it."""

    data: bytes
    timestamp: int  # RTP timestamp of the publisher's stream
    codec: Codec
    keyframe: bool
    received_at: float  # time.monotonic() when its last packet arrived
    sequence_number: int | None = None  # RTP sequence number of its first packet
    after_gap: bool = False  # frames were lost just before it (a delta frame is then broken)


FrameSink = Callable[[EncodedFrame], None]
