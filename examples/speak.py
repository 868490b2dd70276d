"""speak: an ingest endpoint that talks, the way a text-to-speech service does.

When Sluice connects (an ingest adapter, `"location": "local"`), this sends a whole
utterance at once, unpaced, in Packets of 16 KiB of 48 kHz stereo s16le PCM, then an empty
Packet (end of segment); Sluice buffers it and plays it out in real time on a new track.

    python -m examples.speak greeting.wav          # any rate and channel count
    python -m examples.speak --say "hello there"   # needs espeak-ng (apt-get install espeak-ng)
    python -m examples.speak --tone 440 --seconds 2 --loop

With `--loop` the utterance repeats for as long as the adapter lives; Sluice's buffer
(`SLUICE_INGEST_BUFFER_S`) fills up and then holds the sender back, so it does not run
away. Otherwise the connection stays open and the track plays silence until the adapter
is closed.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from examples.audio import BYTES_PER_FRAME, RATE, read_wav, to_sluice_pcm, tone
from examples.endpoint import Endpoint, base_parser, encode, run, stream_key

log = logging.getLogger("examples.speak")
CHUNK_BYTES = 16_384  # what TTS services send; well under the 32 KiB message limit


class SpeakError(Exception):
    """The audio to speak could not be made."""


def espeak(text: str, voice: str = "en") -> bytes:
    """`text` spoken by espeak-ng, as 48 kHz stereo s16le.

    Raises:
        SpeakError: espeak-ng is not installed or failed.
    """
    binary = shutil.which("espeak-ng")
    if binary is None:
        raise SpeakError("espeak-ng is not installed (apt-get install espeak-ng); try --tone")
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "say.wav"
        done = subprocess.run(
            [binary, "-v", voice, "-w", str(out), text], capture_output=True, check=False
        )
        if done.returncode != 0:
            raise SpeakError(f"espeak-ng failed: {done.stderr.decode(errors='replace').strip()}")
        return to_sluice_pcm(*read_wav(out))


def chunk_packets(pcm: bytes, first_sequence: int = 0) -> list[bytes]:
    """The utterance as Packet messages of `CHUNK_BYTES` payloads, then an empty Packet.

    `sequenceNumber` counts Packets and `timestamp` counts 48 kHz samples (Sluice reads
    only the payload on ingest; they are filled in for whoever looks at the wire).
    """
    messages = [
        encode(first_sequence + i, offset // BYTES_PER_FRAME, pcm[offset : offset + CHUNK_BYTES])
        for i, offset in enumerate(range(0, len(pcm), CHUNK_BYTES))
    ]
    return [*messages, encode(0, 0, b"")]


class Speaker(Endpoint):
    """Args:
    pcm: the utterance, 48 kHz stereo s16le.
    loop: repeat it until the adapter closes.
    wait_s: pause after Sluice connects before speaking (time to attach a listener).
    gate: if given, speak only once it is set (used by the demo instead of `wait_s`).
    """

    def __init__(
        self,
        pcm: bytes,
        *,
        loop: bool = False,
        wait_s: float = 0.0,
        gate: asyncio.Event | None = None,
    ) -> None:
        self.pcm = pcm
        self.loop = loop
        self.wait_s = wait_s
        self.gate = gate
        self.first_sent_at: float | None = None  # time.monotonic() of the first Packet

    async def handle(self, ws: ServerConnection) -> None:
        key = stream_key(ws)
        log.info(f"[{key}] Sluice connected")
        try:
            if self.gate is not None:
                await self.gate.wait()
            await asyncio.sleep(self.wait_s)
            sequence = 0
            while True:
                messages = chunk_packets(self.pcm, sequence)
                sequence += len(messages) - 1
                for message in messages:
                    await ws.send(message)
                    if self.first_sent_at is None:
                        self.first_sent_at = time.monotonic()
                seconds = len(self.pcm) / (RATE * BYTES_PER_FRAME)
                log.info(f"[{key}] sent {seconds:.2f} s of audio")
                if not self.loop:
                    break
            await ws.wait_closed()
        except ConnectionClosed:
            pass
        log.info(f"[{key}] closed ({ws.close_code})")


def main(argv: list[str] | None = None) -> int:
    parser = base_parser("speak", __doc__, 9000)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("wav", nargs="?", type=Path, help="a PCM WAV file to speak")
    source.add_argument("--say", metavar="TEXT", help="speak TEXT with espeak-ng")
    source.add_argument("--tone", type=float, metavar="HZ", help="a sine tone instead")
    parser.add_argument("--seconds", type=float, default=2.0, help="length of --tone")
    parser.add_argument("--voice", default="en", help="espeak-ng voice for --say")
    parser.add_argument("--loop", action="store_true", help="repeat until the adapter closes")
    parser.add_argument("--wait", type=float, default=0.0, help="seconds to wait before speaking")
    args = parser.parse_args(argv)
    try:
        if args.say is not None:
            pcm = espeak(args.say, args.voice)
        elif args.tone is not None:
            pcm = to_sluice_pcm(tone(args.tone, args.seconds), RATE)
        else:
            pcm = to_sluice_pcm(*read_wav(args.wav))
    except (SpeakError, OSError, ValueError) as exc:
        print(f"speak: {exc}", file=sys.stderr)
        return 2
    speaker = Speaker(pcm, loop=args.loop, wait_s=args.wait)
    item = {"location": "local", "trackName": "speech", "inputCodec": "pcm"}
    return run(speaker, args.host, args.port, item, "/speak")


if __name__ == "__main__":
    sys.exit(main())
