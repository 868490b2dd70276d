"""What each soxr quality costs egress audio: held-back delay, band edges, CPU per frame.

No stack: the resampler alone, fed 20 ms frames at the rate the egress decoder decodes
to (`worker.protocol.audio_format.decode_rate`: 24 kHz for 8 and 16 kHz out, 48 kHz for
24 kHz out), the way the egress converter feeds it. Per quality and output rate:

- held back: how much audio the stream still holds after each frame (output it owes
  for input it has), mean and max over a second: the delay it adds to egress latency;
- the level of a tone at 0.45 x the output rate (the passband edge the spec asks for)
  and the worst level of tones past the output's Nyquist frequency (1.02x to 1.8x);
- CPU time per 20 ms frame, int16 in and out, hot (best of repeats).

`QQ` is cubic interpolation (no anti-aliasing) and is shown for reference only; `VR` is
libsoxr's variable-rate engine at a fixed ratio (python-soxr's `vr=True`, marked
experimental there; the quality setting makes no difference to it). `OPUS` is no
resampler at all: libopus decoding straight to the output rate, which holds nothing back
but cuts far below 0.45 x the rate (its narrow- and wideband modes) and leaks past the
new Nyquist frequency: why the decoder decodes to 24 or 48 kHz and soxr does the rest.

    python -m bench.resampler [--results-dir DIR]
"""

from __future__ import annotations

import argparse
import time
import timeit
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import soxr

from bench.report import print_table, write_result
from worker.pipelines.opus_pcm import OpusPcmDecoder
from worker.protocol.audio_format import AudioFormat, decode_rate

RATE = 48_000
QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ", "VR")
OUTPUT_RATES = (8000, 16_000, 24_000)
PAST_NYQUIST = (1.02, 1.1, 1.3, 1.8)


def in_rate(rate: int) -> int:
    """What the egress decoder gives the resampler for an output `rate`."""
    return decode_rate(AudioFormat("pcm", rate, 1))


def resampler(quality: str, rate: int, dtype: str) -> soxr.ResampleStream:
    if quality == "VR":
        return soxr.ResampleStream(in_rate(rate), rate, 1, dtype, "MQ", vr=True)
    return soxr.ResampleStream(in_rate(rate), rate, 1, dtype, quality)


def stream(quality: str, rate: int, audio: npt.NDArray[np.int16]) -> list[int]:
    """Output samples after each 20 ms frame of `audio` (mono int16)."""
    resampler_, frame = resampler(quality, rate, "int16"), in_rate(rate) // 50
    return [
        len(resampler_.resample_chunk(audio[i : i + frame].reshape(-1, 1)))
        for i in range(0, len(audio), frame)
    ]


def held_back_ms(quality: str, rate: int) -> tuple[float, float]:
    outputs = np.cumsum(stream(quality, rate, np.zeros(in_rate(rate), np.int16)))
    fed = np.arange(1, len(outputs) + 1) * (in_rate(rate) // 50) * rate / in_rate(rate)
    owed_ms = (fed - outputs)[10:] / rate * 1000  # past the start
    return float(owed_ms.mean()), float(owed_ms.max())


def tone_db(quality: str, rate: int, hz: float) -> float:
    """Level of a full-scale-ish tone after resampling, dB relative to its input."""
    amplitude = 16_000
    if quality == "OPUS":
        out = opus_native(rate, hz, amplitude)[rate // 4 :]
    else:
        source, frame = in_rate(rate), in_rate(rate) // 50
        if hz >= source / 2:
            return -120.0  # the decoder at `source` left nothing there to resample
        t = np.arange(source) / source
        tone = (np.sin(2 * np.pi * hz * t) * amplitude).astype(np.int16)
        float_resampler = resampler(quality, rate, "float32")
        out = np.concatenate(
            [
                float_resampler.resample_chunk(tone[i : i + frame].astype(np.float32))
                for i in range(0, source, frame)
            ]
        )[rate // 4 :]
    rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
    return round(20 * float(np.log10(max(rms * np.sqrt(2) / amplitude, 1e-9))), 1)


def opus_native(rate: int, hz: float, amplitude: int) -> npt.NDArray[np.int16]:
    """A 48 kHz tone through libopus's encoder, decoded straight to `rate`, mono."""
    import fractions

    import av

    codec = av.CodecContext.create("libopus", "w")
    codec.bit_rate, codec.format, codec.layout = 128_000, "s16", "mono"
    codec.sample_rate, codec.time_base = RATE, fractions.Fraction(1, RATE)
    t = np.arange(RATE) / RATE
    tone = (np.sin(2 * np.pi * hz * t) * amplitude).astype(np.int16)
    decoder, out = OpusPcmDecoder(rate, 1), []
    for i in range(RATE // 960):
        frame = av.AudioFrame.from_ndarray(tone[i * 960 : (i + 1) * 960].reshape(1, -1), "s16")
        frame.sample_rate, frame.pts = RATE, i * 960
        for packet in codec.encode(frame):
            out += [np.frombuffer(pcm, "<i2") for pcm in decoder.decode(bytes(packet))]
    return np.concatenate(out)


def cpu_us(quality: str, rate: int) -> float:
    if quality == "OPUS":
        return 0.0  # no resampler: the decoder's own work, less than at 48 kHz
    int_resampler = resampler(quality, rate, "int16")
    frame = (np.random.default_rng(0).integers(-8000, 8000, (in_rate(rate) // 50, 1))).astype(
        np.int16
    )
    runs = timeit.repeat(
        lambda: int_resampler.resample_chunk(frame), number=500, repeat=7, timer=time.process_time
    )
    return round(min(runs) / 500 * 1e6, 1)


def measure() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for quality in (*QUALITIES, "OPUS"):
        for rate in OUTPUT_RATES:
            mean_ms, max_ms = (0.0, 0.0) if quality == "OPUS" else held_back_ms(quality, rate)
            results[f"{quality}_{rate}"] = {
                "quality": quality,
                "rate": rate,
                "held_back_ms_mean": round(mean_ms, 1),
                "held_back_ms_max": round(max_ms, 1),
                "db_at_045": tone_db(quality, rate, 0.45 * rate),
                "db_past_nyquist_worst": max(
                    tone_db(quality, rate, rate / 2 * k) for k in PAST_NYQUIST
                ),
                "cpu_us_per_frame": cpu_us(quality, rate),
            }
    return results


def main(argv: list[str] | None = None, stack: Any = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m bench.resampler", description=__doc__)
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    result = {"qualities": measure()}
    path = write_result("resampler", result, args.results_dir)
    header = ["quality", "rate", "held ms mean", "held ms max", "dB 0.45x", "dB >Nyq", "us/frame"]
    rows = [
        [
            r["quality"],
            r["rate"],
            r["held_back_ms_mean"],
            r["held_back_ms_max"],
            r["db_at_045"],
            r["db_past_nyquist_worst"],
            r["cpu_us_per_frame"],
        ]
        for r in result["qualities"].values()
    ]
    print_table("soxr qualities, the decoder's rate in 20 ms frames", header, rows)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
