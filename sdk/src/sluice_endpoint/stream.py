"""One logical egress stream across Sluice's connections: no I/O, no clock.

An egress adapter that loses its connection re-dials the same endpoint and carries on
counting, so what arrives over connections 1, 2, ... is one stream. Messages in,
`StreamItem`s out: `receive()` decodes each message (a `Packet`, the raw media, or an
event), drops repeats, and puts a `Gap` before media that follows a loss.

The stream ends when the *current* connection closes with 1000 (Sluice closed the
adapter: closed through the API, source ended, ...) or after a `stop` event. A close with
any other code means Sluice is reconnecting; the I/O layer waits for the next connection
and gives up after a while (`give_up()`). Closes of a connection already replaced by a
newer one change nothing, as in Sluice itself.
"""

from __future__ import annotations

from dataclasses import dataclass

from sluice_endpoint.errors import PacketDecodeError
from sluice_endpoint.events import parse_egress_event
from sluice_endpoint.formats import CLOUDFLARE_PCM, AudioFormat, MediaFormat
from sluice_endpoint.gaps import UINT32_MOD, GapTracker
from sluice_endpoint.items import AudioFrame, Gap, JpegFrame, Start, Stop, StreamItem
from sluice_endpoint.packet import decode_packet

CLOSE_NORMAL = 1000


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """Why a stream ended.

    Attributes:
        reason: the `stop` event's reason, else the close frame's reason text (Sluice
            says "track ended" when the source went away), else `lost` when no
            connection came back in time.
        code: the close code of the last connection, if one was received.
        complete: False when the connection was lost and never came back.
    """

    reason: str
    code: int | None
    complete: bool = True


class EgressStreamState:
    """The state of one egress stream (see the module doc).

    Args:
        fmt: what the binary messages hold, until a `start` event says otherwise.
        adapter_id: the adapter, if the dial said (`Sluice-Adapter-Id`) or known.
    """

    def __init__(self, fmt: MediaFormat = CLOUDFLARE_PCM, adapter_id: str | None = None) -> None:
        self.format = fmt
        self.adapter_id = adapter_id
        self.connections = 0  # connections seen so far
        self.current: int | None = None  # the connection Sluice streams on now
        self.end: StreamEnd | None = None
        self.frames = 0  # media frames delivered
        self.skipped = 0  # text or undecodable messages ignored
        self._tracker = GapTracker(fmt.clock_rate)
        self._stop_reason: str | None = None
        # Raw framing has no numbers on the wire: the stream counts them itself.
        self._raw_next = (0, 0)

    @property
    def repeats(self) -> int:
        """Packets dropped because they repeated delivered ones."""
        return self._tracker.repeats

    def connect(self) -> int:
        """A new connection from Sluice; it becomes the current one. Returns its number."""
        self.connections += 1
        self.current = self.connections
        return self.connections

    def starts_new_stream(self, message: bytes | str) -> bool:
        """Whether the first message of a later connection belongs to another adapter.

        A `start` event names its adapter. Without events, a new adapter's first Packet
        has sequence number and timestamp 0, which this stream has long passed.
        """
        if isinstance(message, str):
            event = self._event(message)
            return (
                isinstance(event, Start)
                and self.adapter_id is not None
                and event.adapter_id not in ("", self.adapter_id)
            )
        if self.format.framing == "raw" or self.frames == 0:
            return False
        try:
            packet = decode_packet(message)
        except PacketDecodeError:
            return False
        return packet.sequence_number == 0 and packet.timestamp == 0

    def receive(self, connection: int, message: bytes | str) -> list[StreamItem]:
        """One message of `connection`; returns what the stream yields for it."""
        if self.end is not None:
            return []
        if isinstance(message, str):
            return self._receive_event(message)
        fmt = self.format
        if fmt.framing == "raw":
            sequence_number, timestamp = self._raw_next
            payload = message
        else:
            try:
                packet = decode_packet(message)
            except PacketDecodeError:
                self.skipped += 1
                return []
            sequence_number, timestamp = packet.sequence_number, packet.timestamp
            payload = packet.payload
        if not isinstance(fmt, AudioFormat):
            self._raw_next = ((sequence_number + 1) % UINT32_MOD, timestamp)
            self.frames += 1
            return [JpegFrame(sequence_number, timestamp, payload, connection)]
        duration = fmt.duration(payload)
        self._raw_next = ((sequence_number + 1) % UINT32_MOD, (timestamp + duration) % UINT32_MOD)
        seen = self._tracker.observe(sequence_number, timestamp, duration)
        if seen.repeat:
            return []
        self.frames += 1
        frame = AudioFrame(sequence_number, timestamp, payload, fmt, connection)
        return [seen.gap, frame] if seen.gap is not None else [frame]

    def disconnect(self, connection: int, code: int | None, reason: str = "") -> StreamEnd | None:
        """`connection` closed; returns the stream's end if this ended it."""
        if self.end is not None or connection != self.current:
            return self.end
        self.current = None
        if code == CLOSE_NORMAL or self._stop_reason is not None:
            self.end = StreamEnd(self._stop_reason or reason, code)
        return self.end

    def give_up(self) -> StreamEnd:
        """No connection came back in time: the stream is over, incomplete."""
        if self.end is None:
            self.end = StreamEnd("lost", None, complete=False)
        return self.end

    def _event(self, text: str) -> Start | Gap | Stop | None:
        try:
            return parse_egress_event(text, self.format.clock_rate)
        except ValueError:
            return None

    def _receive_event(self, text: str) -> list[StreamItem]:
        event = self._event(text)
        if event is None:
            self.skipped += 1
            return []
        if isinstance(event, Start):
            if event.format != self.format:
                self.format = event.format
                self._tracker = GapTracker(event.format.clock_rate)
            self.adapter_id = event.adapter_id or self.adapter_id
            if self.format.framing == "raw":
                self._raw_next = (event.sequence_number, event.timestamp)
        elif isinstance(event, Gap):
            self._tracker.excuse_next()
            if self.format.framing == "raw":
                sequence_number = (self._raw_next[0] + event.missing_packets) % UINT32_MOD
                self._raw_next = (sequence_number, event.to_timestamp)
        else:
            self._stop_reason = event.reason
        return [event]
