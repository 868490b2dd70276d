"""stt_ready: an egress endpoint that turns a call's audio into what speech-to-text wants.

Sluice sends 48 kHz stereo unless asked otherwise; most recognisers want 16 kHz mono
s16le. This mixes the channels and resamples (soxr: band-limited, so nothing above 8 kHz
folds back as noise) as the Packets arrive, and shows a level meter.

    python -m examples.stt_ready --port 9200 [--out stt]   # stt/<path>.wav, 16 kHz mono

To feed a recogniser, subclass `SttReady` and override `on_audio`, which gets each block
of 16 kHz mono s16le as soon as it is converted.
"""

from __future__ import annotations

import sys
import wave
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np

from examples.audio import BYTES_PER_FRAME, RATE, Resampler, Timeline, float_to_pcm, pcm_to_float
from examples.audio import level_dbfs as dbfs
from examples.endpoint import EgressEndpoint, base_parser, run
from sluice.wire.packet import DecodedPacket as Packet

STT_RATE = 16_000


class To16kMono:
    """Converts a continuous 48 kHz stereo s16le stream to 16 kHz mono s16le, block by block.

    A sample pair split across two payloads is carried over.
    """

    def __init__(self) -> None:
        self._resampler = Resampler(RATE, STT_RATE, channels=1)
        self._pending = b""

    def feed(self, pcm: bytes) -> bytes:
        data = self._pending + pcm
        usable = len(data) - len(data) % BYTES_PER_FRAME
        self._pending = data[usable:]
        stereo = pcm_to_float(data[:usable])
        mono = stereo.mean(axis=1, keepdims=True, dtype=np.float32)
        return float_to_pcm(self._resampler.process(mono))

    def flush(self) -> bytes:
        """What the resampler still holds at the end of the stream (~20 ms)."""
        return float_to_pcm(self._resampler.flush())


class Meter:
    """A one-line level meter: `update` returns the line to show, about 10 times a second."""

    WIDTH = 40
    FLOOR_DB = -60.0

    def __init__(self, key: str, rate: int = STT_RATE) -> None:
        self.key = key
        self.rate = rate
        self._block: list[bytes] = []
        self._samples = 0
        self.total = 0

    def update(self, pcm: bytes) -> str | None:
        self._block.append(pcm)
        self._samples += len(pcm) // 2
        self.total += len(pcm) // 2
        if self._samples < self.rate // 10:
            return None
        level = dbfs(pcm_to_float(b"".join(self._block), channels=1))
        self._block, self._samples = [], 0
        filled = int(self.WIDTH * max(0.0, 1 - level / self.FLOOR_DB))
        bar = "#" * filled + "." * (self.WIDTH - filled)
        return f"[{self.key}] {self.total / self.rate:7.1f} s  {bar} {level:6.1f} dBFS"


@dataclass
class Stream:
    key: str
    converter: To16kMono = field(default_factory=To16kMono)
    timeline: Timeline = field(default_factory=Timeline)
    meter: Meter | None = None
    wav: wave.Wave_write | None = None


class SttReady(EgressEndpoint[Stream]):
    """Args:
    out_dir: if given, each stream is also written to `out_dir/<path>.wav`.
    display: where the meter goes (a terminal gets one updating line).
    """

    def __init__(self, out_dir: Path | None = None, display: TextIO = sys.stderr) -> None:
        super().__init__()
        self.out_dir = out_dir
        self.display = display
        self._lines = 0

    def on_audio(self, key: str, pcm16k: bytes) -> None:
        """Override: send `pcm16k` (16 kHz mono s16le) to your recogniser."""

    def start(self, key: str, first: Packet) -> Stream:
        stream = Stream(key, meter=Meter(key))
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            path, n = self.out_dir / f"{key}.wav", 1
            while path.exists():
                n += 1
                path = self.out_dir / f"{key}-{n}.wav"
            stream.wav = wave.open(str(path), "wb")  # noqa: SIM115 (open for the stream)
            stream.wav.setnchannels(1)
            stream.wav.setsampwidth(2)
            stream.wav.setframerate(STT_RATE)
        return stream

    def receive(self, stream: Stream, packet: Packet) -> None:
        silence, pcm = stream.timeline.place(packet.timestamp, packet.payload)
        self._converted(stream, stream.converter.feed(bytes(silence * BYTES_PER_FRAME) + pcm))

    def _converted(self, stream: Stream, out: bytes) -> None:
        if not out:
            return
        if stream.wav is not None:
            stream.wav.writeframes(out)
        self.on_audio(stream.key, out)
        line = stream.meter.update(out) if stream.meter else None
        if line is not None:
            self._show(line)

    def finish(self, stream: Stream) -> None:
        self._converted(stream, stream.converter.flush())
        if stream.wav is not None:
            stream.wav.close()
        seconds = stream.meter.total / STT_RATE if stream.meter else 0.0
        self._show(f"[{stream.key}] done: {seconds:.2f} s converted", final=True)

    def _show(self, line: str, final: bool = False) -> None:
        if self.display.isatty():
            self.display.write(f"\r{line}\x1b[K" + ("\n" if final else ""))
        else:  # a log, not a terminal: one line a second
            self._lines += 1
            if final or self._lines % 10 == 0:
                self.display.write(line + "\n")
        self.display.flush()


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("stt_ready", __doc__, 9200)
    parser.add_argument("--out", type=Path, help="also write 16 kHz mono WAVs into this folder")
    args = parser.parse_args(argv)
    item = {"location": "remote", "sessionId": "<session>", "trackName": "<track>"}
    return run(SttReady(args.out), args.host, args.port, {**item, "outputCodec": "pcm"}, "/call")


if __name__ == "__main__":
    sys.exit(main())
