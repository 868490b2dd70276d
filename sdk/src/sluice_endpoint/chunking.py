"""Ingest messages and pacing: no I/O, `now` passed in.

An ingest message may hold at most 32 768 bytes, protobuf overhead included
(websocket-adapter.md §6; 32 769 closes the connection with 1009). `Chunker` cuts any
amount of audio into messages that keep to a limit, on whole samples, in `Packet` or raw
framing. `Pacer` keeps a sender at most `lead_s` ahead of real time.
"""

from __future__ import annotations

from sluice_endpoint.formats import AudioFormat
from sluice_endpoint.packet import MAX_MESSAGE_BYTES, encode_packet, packet_size


def max_payload(max_message_bytes: int, framing: str) -> int:
    """The largest payload whose message (framing included) fits `max_message_bytes`.

    Ingest Packets carry only a payload (Sluice reads nothing else), so the overhead is
    the payload's tag and length: 4 bytes at the 32 KiB limit.

    Raises:
        ValueError: a limit too small for any payload.
    """
    if framing == "raw":
        size = max_message_bytes
    else:
        size = max_message_bytes - 2
        while size > 0 and packet_size(0, 0, size) > max_message_bytes:
            size -= 1
    if size < 1:
        raise ValueError(f"no payload fits in {max_message_bytes} bytes")
    return size


class Chunker:
    """Cuts audio into ingest messages of at most `max_message_bytes`.

    Args:
        fmt: the adapter's input format (its framing and bytes per sample).
        max_message_bytes: the limit per message, framing included (≤ 32 768).
        chunk_ms: cut into messages of about this much audio instead of the largest that
            fit (smaller messages let a pacer keep a short lead).
    """

    def __init__(
        self,
        fmt: AudioFormat,
        max_message_bytes: int = MAX_MESSAGE_BYTES,
        chunk_ms: float | None = None,
    ) -> None:
        if max_message_bytes > MAX_MESSAGE_BYTES:
            raise ValueError(f"Sluice refuses messages over {MAX_MESSAGE_BYTES} bytes")
        self.format = fmt
        step = fmt.bytes_per_sample
        limit = max_payload(max_message_bytes, fmt.framing)
        if chunk_ms is not None:
            limit = min(limit, max(step, int(fmt.bytes_per_second * chunk_ms / 1000)))
        # Whole samples per message where the limit allows: no message splits a sample.
        self.payload_bytes = limit - limit % step if limit >= step else limit

    def chunks(self, audio: bytes) -> list[bytes]:
        """`audio` cut into payloads of at most `payload_bytes`; none for no audio."""
        size = self.payload_bytes
        return [audio[i : i + size] for i in range(0, len(audio), size)]

    def frame(self, payload: bytes) -> bytes:
        """One payload as a message: a `Packet`, or the bytes alone with raw framing."""
        return payload if self.format.framing == "raw" else encode_packet(0, 0, payload)

    def messages(self, audio: bytes) -> list[bytes]:
        """The messages that carry `audio`, in order."""
        return [self.frame(chunk) for chunk in self.chunks(audio)]

    def end_of_segment(self) -> bytes:
        """The message that ends a segment (an utterance): an empty `Packet`, zero bytes."""
        return b""


class Pacer:
    """Keeps a sender at most `lead_s` of audio ahead of real time.

    Sluice buffers what arrives early and plays it out in real time, so a sender that
    pushes a whole utterance at once is fine; pacing keeps what is buffered there short,
    so that stopping (without `clear`) stops the audio soon.

    Args:
        lead_s: how far ahead of playout sending may run.
    """

    def __init__(self, lead_s: float = 0.5) -> None:
        self.lead_s = lead_s
        self._until = 0.0  # when the audio sent so far will have played out

    def delay(self, now: float) -> float:
        """Seconds to wait before sending more."""
        return max(0.0, self._until - now - self.lead_s)

    def sent(self, now: float, seconds: float) -> None:
        """`seconds` of audio went out at `now` (playback of silence fills idle time)."""
        self._until = max(self._until, now) + seconds

    def reset(self) -> None:
        """Nothing is buffered any more (after a `clear`)."""
        self._until = 0.0
