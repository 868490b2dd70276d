"""What an egress stream yields: media frames, gaps, and Sluice's stream events (E4)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from sluice_endpoint.formats import AudioFormat, MediaFormat, mulaw_to_pcm16

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

UINT32_MOD = 1 << 32


def _numpy() -> Any:
    try:
        import numpy
    except ImportError:
        raise ImportError(
            "arrays need numpy: pip install 'sluice-endpoint[numpy]' (or use .data / .pcm16())"
        ) from None
    return numpy


@dataclass(frozen=True, slots=True)
class AudioFrame:
    """One message of audio.

    Attributes:
        sequence_number: of its Packet (raw framing: counted by the reader).
        timestamp: of its Packet, in `format.clock_rate` units (raw framing: counted).
        data: the payload as sent: s16le PCM, μ-law bytes or one Opus packet.
        format: what `data` is.
        connection: which of Sluice's connections brought it (1, 2, ... per reconnect).
    """

    sequence_number: int
    timestamp: int
    data: bytes
    format: AudioFormat
    connection: int = 1

    @property
    def samples(self) -> int:
        """Samples per channel (in `timestamp` units)."""
        return self.format.duration(self.data)

    @property
    def duration_s(self) -> float:
        return self.samples / self.format.clock_rate

    def pcm16(self) -> bytes:
        """The audio as s16le interleaved PCM (μ-law is decoded).

        Raises:
            ValueError: Opus must be decoded by an Opus decoder.
        """
        if self.format.codec == "pcm":
            return self.data
        if self.format.codec == "mulaw":
            return mulaw_to_pcm16(self.data)
        raise ValueError("Opus frames carry encoded audio; decode them with an Opus decoder")

    def array(self) -> npt.NDArray[np.int16]:
        """The audio as int16 of shape (samples, channels); needs numpy."""
        numpy = _numpy()
        pcm = self.pcm16()
        usable = len(pcm) - len(pcm) % (2 * self.format.channels)
        samples: npt.NDArray[np.int16] = numpy.frombuffer(pcm[:usable], dtype="<i2").reshape(
            -1, self.format.channels
        )
        return samples


@dataclass(frozen=True, slots=True)
class JpegFrame:
    """One JPEG snapshot of a video track.

    Attributes:
        sequence_number: of its Packet (may be 0 throughout).
        timestamp: 90 kHz units, 0 for the first one.
        data: a complete JPEG file.
        connection: which of Sluice's connections brought it.
    """

    sequence_number: int
    timestamp: int
    data: bytes
    connection: int = 1


@dataclass(frozen=True, slots=True)
class Gap:
    """Audio that never arrived: the stream goes on at `to_timestamp`, not `from_timestamp`.

    Attributes:
        from_timestamp: where the stream would have gone on.
        to_timestamp: where it went on.
        missing_packets: Packets that never arrived (0: the source itself paused).
        clock_rate: `timestamp` units per second.
        reported_by: `sluice` for a `gap` event (E4); `reader` when the sequence numbers
            or timestamps showed it.
    """

    from_timestamp: int
    to_timestamp: int
    missing_packets: int
    clock_rate: int
    reported_by: Literal["reader", "sluice"] = "reader"

    @property
    def missing(self) -> int:
        """Clock units of audio missing (0 when only sequence numbers were skipped)."""
        step = (self.to_timestamp - self.from_timestamp) % UINT32_MOD
        return 0 if step >= UINT32_MOD // 2 else step

    @property
    def duration_s(self) -> float:
        return self.missing / self.clock_rate

    def silence(self, fmt: AudioFormat, max_s: float = 10.0) -> bytes:
        """Silence to put in the gap's place (at most `max_s`), in `fmt` (pcm or μ-law).

        Raises:
            ValueError: Opus has no byte-level silence.
        """
        samples = min(self.missing, int(max_s * fmt.clock_rate))
        zero = b"\xff" if fmt.codec == "mulaw" else b"\x00"
        return zero * (samples * fmt.bytes_per_sample)


@dataclass(frozen=True, slots=True)
class Start:
    """`start` (E4): first on every connection, when the adapter was made with `events`.

    Attributes:
        adapter_id: the adapter.
        session_id: the session of the source track.
        track_name: the source track.
        connection: 1 for the first connection, then one more per reconnect or resume.
        format: what the binary messages hold.
        sequence_number: that of the next Packet.
        timestamp: that of the next Packet.
    """

    adapter_id: str
    session_id: str
    track_name: str
    connection: int
    format: MediaFormat
    sequence_number: int
    timestamp: int


@dataclass(frozen=True, slots=True)
class Stop:
    """`stop` (E4): Sluice is about to close the connection, and the stream is over.

    Attributes:
        reason: the adapter's close reason (`api_close`, `track_ended`, `shutdown`, ...).
    """

    reason: str


StreamItem = AudioFrame | JpegFrame | Gap | Start | Stop
