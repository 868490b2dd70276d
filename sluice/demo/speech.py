"""The demo page's voice: a short clip as ingest Packets, numpy only, no I/O but espeak-ng.

`examples/speak.py` does this for any WAV with a proper polyphase resampler, but
`examples/` is not installed, so the API cannot import it. espeak-ng speaks at 22 050 Hz;
linear interpolation up to 48 kHz is enough for a spoken sentence (its images land above
17 kHz, where there is little speech and Opus keeps little). Without espeak-ng on PATH
the clip is a short melody instead.
"""

from __future__ import annotations

import io
import shutil
import subprocess
import wave
from functools import cache

import numpy as np
import numpy.typing as npt

from sluice.wire.packet import UINT32_MOD, encode

RATE = 48_000
BYTES_PER_SAMPLE = 4  # one stereo s16le sample pair
CHUNK_BYTES = 16_384  # what TTS services send; well under the 32 KiB message limit
ESPEAK_TIMEOUT_S = 10.0
DEMO_TEXT = "Hello from Sluice"
# C major arpeggio and back: (frequency in Hz, seconds).
MELODY = ((523.25, 0.22), (659.25, 0.22), (783.99, 0.22), (1046.5, 0.44), (783.99, 0.3))

Mono = npt.NDArray[np.float64]


def to_pcm(mono: Mono, rate: int) -> bytes:
    """Float mono in [-1, 1] at `rate` → 48 kHz stereo s16le (linear interpolation)."""
    if rate != RATE and len(mono):
        count = round(len(mono) * RATE / rate)
        mono = np.interp(np.arange(count) * (rate / RATE), np.arange(len(mono)), mono)
    ints = np.clip(np.round(mono * 32767.0), -32768, 32767).astype("<i2")
    return np.repeat(ints, 2).tobytes()  # L, R interleaved


def melody(level: float = 0.3) -> Mono:
    """A bell-like arpeggio at 48 kHz: a sine with a soft octave, each note fading out."""
    notes = []
    for freq_hz, seconds in MELODY:
        t = np.arange(int(seconds * RATE)) / RATE
        attack = np.minimum(1.0, t / 0.01)  # 10 ms: no click at the start of a note
        envelope = attack * np.exp(-t * 5.0)
        wave_ = np.sin(2 * np.pi * freq_hz * t) + 0.25 * np.sin(4 * np.pi * freq_hz * t)
        notes.append(level * envelope * wave_ / 1.25)
    return np.concatenate(notes)


def read_wav_mono(data: bytes) -> tuple[Mono, int]:
    """A 16-bit PCM WAV (espeak-ng's `--stdout`, whose header claims ~2 GiB) as mono float.

    Raises:
        ValueError: not 16-bit PCM WAV data (`wave.Error` is a subclass).
    """
    with wave.open(io.BytesIO(data), "rb") as wav:
        if wav.getsampwidth() != 2:
            raise ValueError(f"expected 16-bit samples, got {8 * wav.getsampwidth()}-bit")
        channels, rate = wav.getnchannels(), wav.getframerate()
        raw = wav.readframes(wav.getnframes())  # a streamed header's length is a guess
    usable = len(raw) - len(raw) % (2 * channels)
    ints = np.frombuffer(raw[:usable], dtype="<i2").reshape(-1, channels)
    return ints[:, 0].astype(np.float64) / 32768.0, rate


def espeak(text: str, voice: str = "en") -> bytes | None:
    """`text` spoken by espeak-ng as 48 kHz stereo s16le; None if it is missing or fails."""
    binary = shutil.which("espeak-ng")
    if binary is None:
        return None
    try:
        done = subprocess.run(
            [binary, "-v", voice, "--stdout", text],
            capture_output=True,
            check=True,
            timeout=ESPEAK_TIMEOUT_S,
        )
        mono, rate = read_wav_mono(done.stdout)
    except (OSError, subprocess.SubprocessError, ValueError, EOFError):
        return None
    return to_pcm(mono, rate) if len(mono) else None


@cache
def demo_clip() -> bytes:
    """What the demo says, made once per process (espeak-ng takes ~0.1 s; blocking)."""
    return espeak(DEMO_TEXT) or to_pcm(melody(), RATE)


def clip_seconds(pcm: bytes) -> float:
    return len(pcm) / (RATE * BYTES_PER_SAMPLE)


def chunk_packets(pcm: bytes, first_sequence: int = 0) -> list[bytes]:
    """`pcm` as Packet messages of `CHUNK_BYTES` payloads, then an empty Packet.

    `sequenceNumber` counts Packets and `timestamp` counts 48 kHz samples from the
    clip's start (ingest reads only the payload; they are there for whoever looks).
    """
    messages = [
        encode(
            (first_sequence + i) % UINT32_MOD,
            (offset // BYTES_PER_SAMPLE) % UINT32_MOD,
            pcm[offset : offset + CHUNK_BYTES],
        )
        for i, offset in enumerate(range(0, len(pcm), CHUNK_BYTES))
    ]
    return [*messages, encode(0, 0, b"")]
