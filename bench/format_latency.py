"""Egress latency per format, side by side: what resampling and μ-law add end to end.

One click track (`bench.media.ClickTrack`) is published once; an egress adapter of each
format pulls it at the same time, each to its own endpoint path. Each click's latency is
from the publisher's `recv()` of the click frame to the arrival of the first Packet that
holds it (μ-law and Opus payloads are decoded here to find it). All formats share the
same publisher, SFU and moment, so their differences are what the formats add.

    python -m bench.format_latency [--clicks 40] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
from pathlib import Path
from typing import Any

import av
import numpy as np

from bench.harness import Stack, egress_item, endpoint, progress, running_stack
from bench.media import ClickDetector, ClickTrack, match_latencies
from bench.report import distribution, print_table, ratio, write_result
from sluice.media.aiortc_internals import register_codecs
from sluice.media.ice import set_loopback
from sluice.wire.packet import decode
from worker.protocol.g711 import mulaw_decode

FORMATS: dict[str, dict[str, Any]] = {
    "pcm_48k_stereo": {"outputCodec": "pcm"},
    "pcm_16k_mono": {"outputCodec": "pcm", "sampleRate": 16000, "channels": 1},
    "mulaw_8k": {"outputCodec": "mulaw"},
    "opus": {"outputCodec": "opus"},
}


class OpusSamples:
    """Decodes an opus adapter's payloads to s16 samples, as its endpoint would."""

    def __init__(self) -> None:
        self._codec: Any = av.CodecContext.create("libopus", "r")
        self._codec.format, self._codec.layout, self._codec.sample_rate = "s16", "stereo", 48_000

    def __call__(self, payload: bytes) -> np.ndarray:
        frames = self._codec.decode(av.Packet(payload))
        return np.concatenate([f.to_ndarray().reshape(-1) for f in frames])


async def measure(stack: Stack, clicks: int) -> dict[str, Any]:
    set_loopback(True)
    source = ClickTrack()
    detectors = {name: ClickDetector() for name in FORMATS}
    opus = OpusSamples()

    def on_message(path: str, message: bytes, now: float) -> None:
        payload = decode(message).payload
        if path == "mulaw_8k":
            detectors[path].feed(mulaw_decode(payload), now)
        elif path == "opus":
            detectors[path].feed(opus(payload), now)
        else:
            detectors[path].feed(payload, now)

    sessions = stack.sessions()
    adapters: list[str] = []
    async with endpoint(on_message) as ep:
        try:
            session_id, _ = await sessions.publish(source, "mic")
            for name, fields in FORMATS.items():
                item = {**egress_item(ep.url(name), session_id, "mic", "pcm"), **fields}
                adapters.append((await stack.create(item))["adapterId"])
            async with asyncio.timeout(20):
                for detector in detectors.values():
                    await detector.flowing.wait()
            await asyncio.sleep(1.0)
            source.armed.set()
            progress(f"format latency: {clicks} clicks on {len(FORMATS)} formats")
            await asyncio.sleep(clicks * source.every_frames * 0.020)  # one per 25 frames
            source.armed.clear()
            await asyncio.sleep(1.0)
            await stack.close(adapters)
        finally:
            await sessions.close()
            source.stop()
    results: dict[str, Any] = {}
    for name, detector in detectors.items():
        latencies = match_latencies(source.click_times, detector.times)
        results[name] = {
            "latency_ms": distribution(latencies, 1000),
            "detected": len(latencies),
            "clicks_sent": len(source.click_times),
        }
    return {"formats": results, "config": {"clicks": clicks}}


def show(result: dict[str, Any]) -> None:
    formats = result["formats"]
    baseline = formats["pcm_48k_stereo"]["latency_ms"]["median"]
    rows = [
        [
            name,
            r["detected"],
            r["latency_ms"]["median"],
            r["latency_ms"]["p95"],
            r["latency_ms"]["max"],
            ratio(r["latency_ms"]["median"], baseline),
        ]
        for name, r in formats.items()
    ]
    header = ["format", "clicks", "median ms", "p95 ms", "max ms", "vs 48k stereo"]
    print_table("egress latency per format, side by side", header, rows)


def main(argv: list[str] | None = None, stack: Stack | None = None) -> dict[str, Any]:
    register_codecs()  # this process makes peer connections of its own
    parser = argparse.ArgumentParser(prog="python -m bench.format_latency", description=__doc__)
    parser.add_argument("--clicks", type=int, default=40, help="clicks (two a second)")
    parser.add_argument("--quick", action="store_true", help="smoke run: 6 clicks")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    clicks = 6 if args.quick else args.clicks
    with contextlib.ExitStack() as exit_stack:
        if stack is None:
            stack = exit_stack.enter_context(running_stack(workers=len(FORMATS)))
        result = asyncio.run(measure(stack, clicks))
    result["quick"] = args.quick
    path = write_result("format_latency", result, args.results_dir)
    show(result)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
