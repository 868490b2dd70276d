"""What ingest's Opus encode costs per 20 ms frame: PyAV against libopus, stereo and mono.

No stack: the encoder alone, fed the 48 kHz stereo frames ingest plays out, CPU time per
frame (best of repeated rounds, every encoder in each, `time.process_time`) and the
bitrate it came to. Sources: a 440 Hz tone on both channels (speech synthesis and every
mono input format arrive like this), the same with 660 Hz on the right (true stereo),
and speech from espeak-ng when it is installed (on both channels). Encoders:

- `pyav`: FFmpeg's libopus wrapper as ingest used it (an `AudioFrame` in, a `Packet`
  out, 96 kb/s, FFmpeg's complexity 10 and unconstrained VBR);
- `libopus`: `worker.pipelines.opus_encode.OpusPcmEncoder`, which codes equal channels
  as mono; `libopus_stereo`: the same with the mono switch off.

    python -m bench.opus_encoder [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
import wave
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import soxr

from bench.cost import tone_frames
from bench.report import print_table, write_result
from worker.pipelines.opus_encode import OpusPcmEncoder
from worker.pipelines.playout_track import OPUS_BITRATE
from worker.protocol.pcm import FRAME_BYTES, FRAME_SAMPLES, SAMPLE_RATE

SECONDS = 4
SENTENCE = (
    "The quick brown fox jumps over the lazy dog. Sluice streams media between WebRTC "
    "tracks and WebSocket endpoints, and this sentence is long enough to measure."
)


def tone(*, two_tones: bool) -> bytes:
    """`SECONDS` of `bench.cost`'s ingest tone (whole cycles a second: it repeats seamlessly)."""
    return b"".join(tone_frames(two_tones=two_tones)) * SECONDS


def speech() -> bytes | None:
    if shutil.which("espeak-ng") is None:
        return None
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "speech.wav"
        subprocess.run(["espeak-ng", "-w", str(path), SENTENCE], check=True)
        with wave.open(str(path)) as wav:
            rate, data = wav.getframerate(), wav.readframes(wav.getnframes())
    mono = soxr.resample(np.frombuffer(data, dtype="<i2"), rate, SAMPLE_RATE).astype("<i2")
    return np.repeat(mono, 2).tobytes()


def pyav_encode(frames: list[bytes]) -> list[bytes]:
    encoder = av.CodecContext.create("libopus", "w")
    assert isinstance(encoder, av.audio.codeccontext.AudioCodecContext)
    encoder.format, encoder.layout, encoder.sample_rate = "s16", "stereo", SAMPLE_RATE
    encoder.bit_rate, encoder.time_base = OPUS_BITRATE, Fraction(1, SAMPLE_RATE)
    packets: list[bytes] = []
    for i, pcm in enumerate(frames):
        frame = av.AudioFrame(format="s16", layout="stereo", samples=FRAME_SAMPLES)
        frame.planes[0].update(pcm)
        frame.sample_rate, frame.pts = SAMPLE_RATE, i * FRAME_SAMPLES
        frame.time_base = Fraction(1, SAMPLE_RATE)
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets


def libopus_encode(frames: list[bytes], *, mono_switch: bool = True) -> list[bytes]:
    encoder = OpusPcmEncoder(OPUS_BITRATE, mono_when_equal=mono_switch)
    return [encoder.encode(pcm) for pcm in frames]


ENCODERS: dict[str, Callable[[list[bytes]], list[bytes]]] = {
    "pyav": pyav_encode,
    "libopus_stereo": lambda frames: libopus_encode(frames, mono_switch=False),
    "libopus": libopus_encode,
}


def measure(pcm: bytes, repeats: int = 9) -> dict[str, Any]:
    """Each encoder in turn, `repeats` rounds: the machine's noise weighs on all alike."""
    frames = [pcm[i : i + FRAME_BYTES] for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES)]
    best = dict.fromkeys(ENCODERS, float("inf"))
    packets: dict[str, list[bytes]] = {}
    for _ in range(repeats):
        for name, encode in ENCODERS.items():
            start = time.process_time()
            packets[name] = encode(frames)
            best[name] = min(best[name], time.process_time() - start)
    seconds = len(frames) * FRAME_SAMPLES / SAMPLE_RATE
    return {
        name: {
            "us_per_frame": round(best[name] / len(frames) * 1e6, 1),
            "kbps": round(8 * sum(map(len, packets[name])) / seconds / 1000, 1),
            "stereo_packets_pct": round(
                100 * sum(p[0] & 4 > 0 for p in packets[name]) / len(packets[name])
            ),
        }
        for name in ENCODERS
    }


def main(argv: list[str] | None = None, stack: Any = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.opus_encoder", description=__doc__)
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    sources = {"tone_both_channels": tone(two_tones=False), "two_tones": tone(two_tones=True)}
    if (spoken := speech()) is not None:
        sources["speech_both_channels"] = spoken
    result = {"sources": {name: measure(pcm) for name, pcm in sources.items()}}
    path = write_result("opus_encoder", result, args.results_dir)
    rows = [
        [source, encoder, r["us_per_frame"], r["kbps"], r["stereo_packets_pct"]]
        for source, by_encoder in result["sources"].items()
        for encoder, r in by_encoder.items()
    ]
    header = ["source", "encoder", "us/frame", "kb/s", "stereo packets %"]
    print_table("ingest's Opus encode, 20 ms frames of 48 kHz stereo", header, rows)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
