"""record: an egress endpoint that writes what Sluice sends to files.

Audio (`"outputCodec": "pcm"`) goes to `OUT/<path>.wav` (48 kHz stereo s16le), JPEG
snapshots (`"outputCodec": "jpeg"`) to `OUT/<path>/000001.jpg`, `000002.jpg`, ... where
`<path>` is the URL path the adapter dials, so one server records many adapters:

    python -m examples.record --port 9100 --out recordings
    # then an egress adapter with "endpoint": "ws://127.0.0.1:9100/mic" → recordings/mic.wav

If the connection drops, Sluice re-dials and this appends to the same file; the WAV
follows the Packets' timestamps, so a gap is written as silence and the file keeps wall
time. The WAV header is updated on every write: the file plays while it grows. A new
adapter on the same path starts `<path>-2.wav`; files are never overwritten.
"""

from __future__ import annotations

import logging
import sys
import wave
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from examples.audio import BYTES_PER_FRAME, CHANNELS, RATE, Timeline
from examples.endpoint import EgressEndpoint, base_parser, run
from sluice.wire.packet import DecodedPacket as Packet

log = logging.getLogger("examples.record")
JPEG_START = b"\xff\xd8"


@dataclass
class Take:
    """One adapter's recording: a WAV file, or a folder of JPEGs."""

    key: str
    path: Path
    wav: wave.Wave_write | None = None
    timeline: Timeline | None = None
    images: int = 0

    @property
    def seconds(self) -> float:
        return self.timeline.written / RATE if self.timeline else 0.0


class Recorder(EgressEndpoint[Take]):
    """Args:
    out_dir: where the files go (created if needed).
    on_packet: called with (stream key, Packet) for every Packet, after it is written.
    """

    def __init__(
        self, out_dir: Path, on_packet: Callable[[str, Packet], None] | None = None
    ) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.on_packet = on_packet
        self.finished: list[Take] = []

    def start(self, key: str, first: Packet) -> Take:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        is_jpeg = first.payload.startswith(JPEG_START)
        suffix = "" if is_jpeg else ".wav"
        path, n = self.out_dir / f"{key}{suffix}", 1
        while path.exists():
            n += 1
            path = self.out_dir / f"{key}-{n}{suffix}"
        if is_jpeg:
            path.mkdir()
            take = Take(key, path)
        else:
            wav = wave.open(str(path), "wb")  # noqa: SIM115 (open for the take's lifetime)
            wav.setnchannels(CHANNELS)
            wav.setsampwidth(2)
            wav.setframerate(RATE)
            take = Take(key, path, wav, Timeline())
        log.info(f"[{key}] recording to {path}")
        return take

    def receive(self, take: Take, packet: Packet) -> None:
        if take.wav is not None and take.timeline is not None:
            silence, pcm = take.timeline.place(packet.timestamp, packet.payload)
            if silence:
                take.wav.writeframes(bytes(silence * BYTES_PER_FRAME))
            if pcm:
                take.wav.writeframes(pcm)
        elif packet.payload:
            take.images += 1
            (take.path / f"{take.images:06d}.jpg").write_bytes(packet.payload)
        if self.on_packet is not None:
            self.on_packet(take.key, packet)

    def finish(self, take: Take) -> None:
        if take.wav is not None:
            take.wav.close()
            what = f"{take.seconds:.2f} s of audio"
        else:
            what = f"{take.images} JPEGs"
        log.info(f"[{take.key}] done: {what} in {take.path}")
        self.finished.append(take)


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("record", __doc__, 9100)
    parser.add_argument("--out", type=Path, default=Path("recordings"), help="output folder")
    args = parser.parse_args(argv)
    item = {"location": "remote", "sessionId": "<session>", "trackName": "<track>"}
    return run(Recorder(args.out), args.host, args.port, {**item, "outputCodec": "pcm"}, "/mic")


if __name__ == "__main__":
    sys.exit(main())
