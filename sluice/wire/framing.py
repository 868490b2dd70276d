"""What one binary WebSocket message holds: a `Packet`, or the media alone (extensions.md E3).

An adapter's `framing` is `packet` unless its create item said `raw`:

- `packet` (Cloudflare's wire): one protobuf `Packet` per message, numbers and payload.
- `raw`: the payload alone, no protobuf, for sockets that take raw audio (a speech-to-text
  service's linear16 or μ-law socket). Egress sends exactly what the Packet's payload
  would have been (one frame of samples, one Opus packet, one JPEG); ingest takes each
  message's bytes as audio of the input format. Nothing numbers the messages: an
  endpoint that asked for E4 events learns the numbers from `start` and `gap`.

Either way a zero-length message ends an ingest segment (it is the empty `Packet`, and
the empty payload), text messages stay JSON control, and the 32 KiB message limit holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from sluice.wire.packet import BytesLike, decode, encode


class Framing(StrEnum):
    PACKET = "packet"
    RAW = "raw"


def framing_of(options: Mapping[str, Any]) -> Framing:
    """The framing of an adapter record's settings (`AdapterRecord.options`).

    Records from before E3 have none: they are `packet`.

    Raises:
        ValueError: a value the API would not have accepted.
    """
    return Framing(options.get("framing", Framing.PACKET))


def frame(framing: Framing, sequence_number: int, timestamp: int, payload: bytes) -> bytes:
    """One egress message carrying `payload`: its `Packet`, or the payload itself.

    Args:
        framing: the adapter's.
        sequence_number, timestamp: the Packet's numbers (not sent with `raw`).
        payload: the media bytes.
    """
    if framing is Framing.RAW:
        return payload
    return encode(sequence_number, timestamp, payload)


def payload_of(framing: Framing, message: BytesLike) -> bytes:
    """The media bytes of one ingest message; empty: the end of a segment.

    Args:
        framing: the adapter's.
        message: a binary message as received.

    Raises:
        PacketDecodeError: `packet` framing, and the bytes are not a `Packet`.
    """
    if framing is Framing.RAW:
        return message if isinstance(message, bytes) else bytes(message)
    return decode(message).payload
