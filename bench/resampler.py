"""What each soxr quality costs egress audio: held-back delay, band edges, CPU per frame.

No stack: the resampler alone, fed 20 ms frames of 48 kHz the way the egress converter
feeds it. Per quality and output rate:

- held back: how much audio the stream still holds after each frame (output it owes
  for input it has), mean and max over a second: the delay it adds to egress latency;
- the level of a tone at 0.45 x the output rate (the passband edge the spec asks for)
  and the worst level of tones past the output's Nyquist frequency (1.02x to 1.8x);
- CPU time per 20 ms frame, int16 in and out, hot (best of repeats).

`QQ` is cubic interpolation (no anti-aliasing) and is shown for reference only; `VR` is
libsoxr's variable-rate engine at a fixed ratio (python-soxr's `vr=True`, marked
experimental there; the quality setting makes no difference to it).

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

RATE = 48_000
FRAME = 960
QUALITIES = ("QQ", "LQ", "MQ", "HQ", "VHQ", "VR")
OUTPUT_RATES = (8000, 16_000, 24_000)
PAST_NYQUIST = (1.02, 1.1, 1.3, 1.8)


def resampler(quality: str, rate: int, dtype: str) -> soxr.ResampleStream:
    if quality == "VR":
        return soxr.ResampleStream(RATE, rate, 1, dtype, "MQ", vr=True)
    return soxr.ResampleStream(RATE, rate, 1, dtype, quality)


def stream(quality: str, rate: int, audio: npt.NDArray[np.int16]) -> list[int]:
    """Output samples after each 20 ms frame of `audio` (mono int16)."""
    resampler_ = resampler(quality, rate, "int16")
    return [
        len(resampler_.resample_chunk(audio[i : i + FRAME].reshape(-1, 1)))
        for i in range(0, len(audio), FRAME)
    ]


def held_back_ms(quality: str, rate: int) -> tuple[float, float]:
    outputs = np.cumsum(stream(quality, rate, np.zeros(RATE, np.int16)))
    fed = np.arange(1, len(outputs) + 1) * FRAME * rate / RATE
    owed_ms = (fed - outputs)[10:] / rate * 1000  # past the start
    return float(owed_ms.mean()), float(owed_ms.max())


def tone_db(quality: str, rate: int, hz: float) -> float:
    """Level of a full-scale-ish tone after resampling, dB relative to its input."""
    t = np.arange(RATE) / RATE
    amplitude = 16_000
    tone = (np.sin(2 * np.pi * hz * t) * amplitude).astype(np.int16)
    float_resampler = resampler(quality, rate, "float32")
    out = np.concatenate(
        [
            float_resampler.resample_chunk(tone[i : i + FRAME].astype(np.float32))
            for i in range(0, RATE, FRAME)
        ]
    )[rate // 4 :]
    rms = float(np.sqrt(np.mean(out.astype(np.float64) ** 2)))
    return round(20 * float(np.log10(max(rms * np.sqrt(2) / amplitude, 1e-9))), 1)


def cpu_us(quality: str, rate: int) -> float:
    int_resampler = resampler(quality, rate, "int16")
    frame = (np.random.default_rng(0).integers(-8000, 8000, (FRAME, 1))).astype(np.int16)
    runs = timeit.repeat(
        lambda: int_resampler.resample_chunk(frame), number=500, repeat=7, timer=time.process_time
    )
    return round(min(runs) / 500 * 1e6, 1)


def measure() -> dict[str, Any]:
    results: dict[str, Any] = {}
    for quality in QUALITIES:
        for rate in OUTPUT_RATES:
            mean_ms, max_ms = held_back_ms(quality, rate)
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
    print_table("soxr qualities, 48 kHz in 20 ms frames", header, rows)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
