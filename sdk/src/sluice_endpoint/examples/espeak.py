"""Text to speech with espeak-ng (Debian: `apt-get install espeak-ng`), streamed.

espeak-ng writes a WAV stream to its standard output as it synthesises, sentence by
sentence; `synthesise` yields its PCM as it comes, so the first words can be on their
way to Sluice before the last are made. Any engine that produces PCM at its own rate
fits the same place: send what it yields with that `sample_rate`.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass

VOICE = "en-us+f2"  # clear to recognisers too (see the examples' README)
WORDS_PER_MINUTE = 150
READ_BYTES = 4096  # ~90 ms of 22.05 kHz mono: small enough to start sending at once


class SynthesisError(Exception):
    """espeak-ng is missing, or failed."""


@dataclass(frozen=True, slots=True)
class WavHeader:
    sample_rate: int
    channels: int
    size: int  # bytes of header before the samples


def parse_wav_header(head: bytes) -> WavHeader:
    """The format of a 16-bit PCM WAV stream from its first bytes (44 or more).

    Raises:
        SynthesisError: not 16-bit PCM WAV, or the samples do not start in `head`.
    """
    if head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise SynthesisError("espeak-ng did not write a WAV stream")
    position = 12
    sample_rate = channels = bits = 0
    while position + 8 <= len(head):
        tag = head[position : position + 4]
        size = int.from_bytes(head[position + 4 : position + 8], "little")
        if tag == b"fmt ":
            fmt = head[position + 8 : position + 24]
            channels = int.from_bytes(fmt[2:4], "little")
            sample_rate = int.from_bytes(fmt[4:8], "little")
            bits = int.from_bytes(fmt[14:16], "little")
        elif tag == b"data":
            if bits != 16 or not sample_rate:
                raise SynthesisError(f"expected 16-bit PCM, got {bits}-bit at {sample_rate} Hz")
            return WavHeader(sample_rate, channels, position + 8)
        position += 8 + size
    raise SynthesisError("no samples after the WAV header")


class Speech:
    """One utterance being synthesised; espeak-ng runs while it is open:

        async with Speech("Hello there") as speech:  # speech.sample_rate: 22050
            async for pcm in speech.chunks():         # s16le, speech.channels: 1
                ...

    Args:
        text: what to say.
        voice: an espeak-ng voice (`espeak-ng --voices`), variants with `+`.
        words_per_minute: speaking rate.
    """

    def __init__(
        self, text: str, voice: str = VOICE, words_per_minute: int = WORDS_PER_MINUTE
    ) -> None:
        self.text = text
        self.voice = voice
        self.words_per_minute = words_per_minute
        self.sample_rate = 0
        self.channels = 0
        self._process: asyncio.subprocess.Process | None = None
        self._head = b""

    async def start(self) -> None:
        """Starts espeak-ng and reads the WAV header.

        Raises:
            SynthesisError: espeak-ng is missing or wrote no WAV stream.
        """
        binary = shutil.which("espeak-ng")
        if binary is None:
            raise SynthesisError("espeak-ng is not installed (apt-get install espeak-ng)")
        args = ["-v", self.voice, "-s", str(self.words_per_minute), "--stdout", "--stdin"]
        process = self._process = await asyncio.create_subprocess_exec(
            binary,
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(self.text.encode())
        process.stdin.close()  # the text is all there is: espeak-ng speaks it and exits
        head = await process.stdout.read(64)
        while len(head) < 44 and (more := await process.stdout.read(64)):
            head += more
        if not head:
            assert process.stderr is not None
            problem = (await process.stderr.read()).decode(errors="replace").strip()
            await self.aclose()
            raise SynthesisError(f"espeak-ng failed: {problem or 'no output'}")
        header = parse_wav_header(head)
        self.sample_rate, self.channels = header.sample_rate, header.channels
        self._head = head[header.size :]

    async def __aenter__(self) -> Speech:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def chunks(self) -> AsyncIterator[bytes]:
        """s16le PCM as espeak-ng produces it, in whole samples."""
        process = self._process
        assert process is not None and process.stdout is not None, "not started"
        pending = self._head
        try:
            while chunk := await process.stdout.read(READ_BYTES):
                pending += chunk
                whole = len(pending) - len(pending) % (2 * self.channels)
                if whole:
                    yield pending[:whole]
                    pending = pending[whole:]
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        """Stops espeak-ng (a barge-in cut it short) and reaps it."""
        process = self._process
        if process is None:
            return
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
        await process.wait()
