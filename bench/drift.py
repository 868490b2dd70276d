"""Ingest pacing drift: does a long real-time stream stay on the wall clock?

One ingest adapter is fed real-time PCM by this process's endpoint: 20 ms Packets on a
drift-free `loop.time()` grid, with a click every `--click-every` seconds. A subscriber
here pulls the adapter's track through the SFU with the receiver tapped (no jitter
buffer) and records, for every Opus frame, its arrival time and RTP timestamp.

- **Pacing drift**: deviation(t) = (arrival - first arrival) - (RTP timestamp - first
  timestamp) / 48 kHz. The RTP timestamp is the adapter pacer's tick (tick x 960), so a
  pacer running slow or fast, or ticks skipped, show up here. Reported relative to the
  median of the first 5 s: at the end (median of the last 5 s) and the largest along
  the way.
- **Frame count**: frames received vs wall time elapsed / 20 ms.
- **Content latency**: each click from the endpoint's send to its detection; growing
  latency means the playout buffer grew (e.g. silence inserted on underruns).

    python -m bench.drift [--seconds 600] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import time
from pathlib import Path
from typing import Any

import numpy as np
from websockets.asyncio.server import ServerConnection

from bench.harness import Stack, endpoint, ingest_item, progress, running_stack
from bench.latency import tapped_decoder
from bench.media import (
    FRAME,
    FRAME_S,
    RATE,
    ClickDetector,
    click_frame,
    match_latencies,
    per_click_ms,
)
from bench.media import quiet_frame as quiet
from bench.report import distribution, print_table, write_result
from sluice.media.aiortc_internals import register_codecs
from sluice.media.ice import set_loopback
from sluice.media.types import EncodedFrame
from sluice.wire.packet import encode

EDGE_S = 5.0  # the first and last seconds the drift is anchored to
WHERE = {
    "bench process": "feeding endpoint (real-time grid), tapped subscriber",
    "adapter process": "one ingest adapter",
    "sfu process": "`sluice sfu` forwarding to the subscriber",
}


class FrameLog:
    """Arrival time and unwrapped RTP timestamp of every received frame."""

    def __init__(self) -> None:
        self.arrivals: list[float] = []
        self.timestamps: list[int] = []
        self._last: int | None = None
        self._unwrapped = 0

    def add(self, frame: EncodedFrame) -> None:
        if self._last is not None:
            self._unwrapped += (frame.timestamp - self._last) % (1 << 32)
        self._last = frame.timestamp
        self.arrivals.append(frame.received_at)
        self.timestamps.append(self._unwrapped)

    def deviation_ms(self) -> np.ndarray:
        wall = np.asarray(self.arrivals) - self.arrivals[0]
        media = np.asarray(self.timestamps, dtype=np.float64) / RATE
        return np.asarray((wall - media) * 1000)


def analyse(log: FrameLog, until: float, every_s: float = 10.0) -> dict[str, Any]:
    """Deviation statistics of the frames that arrived before `until` (the close)."""
    keep = int(np.searchsorted(log.arrivals, until, side="right"))
    dev = log.deviation_ms()[:keep]
    wall = np.asarray(log.arrivals[:keep]) - log.arrivals[0]
    base = float(np.median(dev[wall < EDGE_S]))
    rel = dev - base
    end = float(np.median(rel[wall > wall[-1] - EDGE_S]))
    steps = np.diff(np.asarray(log.timestamps))
    series = []
    for start in np.arange(0, wall[-1], every_s):
        window = rel[(wall >= start) & (wall < start + every_s)]
        if len(window):
            series.append([round(float(start), 1), round(float(np.median(window)), 2)])
    return {
        "seconds": round(float(wall[-1]), 1),
        "frames_received": len(dev),
        "frames_expected_from_wall": round(float(wall[-1]) / FRAME_S) + 1,
        "drift_at_end_ms": round(end, 2),
        "max_abs_deviation_ms": round(float(np.abs(rel).max()), 2),
        "max_abs_deviation_at_s": round(float(wall[int(np.abs(rel).argmax())]), 1),
        # Without the first seconds, where connection setup can delay a few frames.
        "max_abs_deviation_after_5s_ms": round(float(np.abs(rel[wall >= EDGE_S]).max()), 2)
        if (wall >= EDGE_S).any()
        else None,
        "p99_abs_deviation_ms": round(float(np.percentile(np.abs(rel), 99)), 2),
        "rtp_steps_not_960": int((steps != FRAME).sum()),
        "rtp_skipped_ms": round(float((steps[steps > FRAME] - FRAME).sum()) / RATE * 1000, 1),
        "median_deviation_every_10s_ms": series,
    }


async def run(stack: Stack, seconds: float, click_every_s: float) -> dict[str, Any]:
    set_loopback(True)
    clicks_every = round(click_every_s / FRAME_S)
    quiet_frames = [quiet(i).tobytes() for i in range(50)]
    click = click_frame().tobytes()
    sent: list[float] = []
    lateness: list[float] = []
    started = asyncio.Event()

    async def feed(_: str, ws: ServerConnection) -> None:
        loop = asyncio.get_running_loop()
        await started.wait()
        start, n = loop.time(), 0
        while True:
            await asyncio.sleep(max(0.0, start + n * FRAME_S - loop.time()))
            lateness.append(loop.time() - (start + n * FRAME_S))
            is_click = n % clicks_every == clicks_every // 2
            message = encode(n, n * FRAME, click if is_click else quiet_frames[n % 50])
            if is_click:
                sent.append(time.monotonic())
            await ws.send(message)
            n += 1

    log = FrameLog()
    detector = ClickDetector()
    decode = tapped_decoder(lambda pcm: detector.feed(pcm, time.monotonic()))

    def on_frame(frame: EncodedFrame) -> None:
        log.add(frame)
        decode(frame)

    sessions = stack.sessions()
    async with endpoint(on_connect=feed) as ep:
        try:
            adapter = await stack.create(ingest_item(ep.url("drift"), "tts"))
            await sessions.pull(adapter["sessionId"], "tts", kind="audio", on_frame=on_frame)
            started.set()
            loop = asyncio.get_running_loop()
            begin = loop.time()
            while (elapsed := loop.time() - begin) < seconds:
                await asyncio.sleep(min(10.0, seconds - elapsed))
                if len(log.arrivals) > 1:
                    now_dev = float(log.deviation_ms()[-50:].mean())
                    progress(
                        f"drift: {loop.time() - begin:.0f}/{seconds:.0f} s, "
                        f"{len(log.arrivals)} frames, deviation now {now_dev:+.1f} ms "
                        f"(vs the first frame)"
                    )
            until = time.monotonic()  # frames after this may be delayed by the close
            view = await stack.view(adapter["adapterId"])
            await stack.close([adapter["adapterId"]])
        finally:
            await sessions.close()
    latencies = match_latencies(sent, detector.times, max_s=2.0)
    result = analyse(log, until)
    result.update(
        {
            "click_latency_ms": distribution(latencies, 1000),
            "click_latency_first_last_ms": [
                round(latencies[0] * 1000, 1) if latencies else None,
                round(latencies[-1] * 1000, 1) if latencies else None,
            ],
            "clicks_sent": len(sent),
            "per_click_ms": per_click_ms(sent, detector.times, max_s=2.0),
            "endpoint_send_lateness_ms": distribution(lateness, 1000),
            "adapter_counters": view.get("counters", {}),
            "where": WHERE,
            "config": {"seconds": seconds, "click_every_s": click_every_s},
        }
    )
    return result


def show(result: dict[str, Any]) -> None:
    lat = result["click_latency_ms"]
    rows = [
        ["run length (s)", result["seconds"]],
        [
            "frames received / expected",
            f"{result['frames_received']}/{result['frames_expected_from_wall']}",
        ],
        ["drift at end (ms)", result["drift_at_end_ms"]],
        ["max |deviation| (ms)", result["max_abs_deviation_ms"]],
        ["  ... at (s)", result["max_abs_deviation_at_s"]],
        ["max |deviation| after 5 s (ms)", result["max_abs_deviation_after_5s_ms"]],
        ["p99 |deviation| (ms)", result["p99_abs_deviation_ms"]],
        ["RTP steps != 960", result["rtp_steps_not_960"]],
        ["click latency median/max (ms)", f"{lat['median']}/{lat['max']}"],
        ["click latency first/last (ms)", str(result["click_latency_first_last_ms"])],
        ["adapter underruns", result["adapter_counters"].get("underruns")],
    ]
    print_table("ingest pacing drift", ["measure", "value"], rows)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.drift", description=__doc__)
    parser.add_argument("--seconds", type=float, default=600.0, help="length of the stream")
    parser.add_argument("--click-every", type=float, default=5.0, help="seconds between clicks")
    parser.add_argument("--quick", action="store_true", help="smoke run: 5 s")
    parser.add_argument("--results-dir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, stack: Stack | None = None) -> dict[str, Any]:
    register_codecs()  # this process makes peer connections of its own
    args = parse(argv)
    seconds, every = (5.0, 1.0) if args.quick else (args.seconds, args.click_every)
    with contextlib.ExitStack() as exit_stack:
        if stack is None:
            stack = exit_stack.enter_context(running_stack(workers=1))
        result = asyncio.run(run(stack, seconds, every))
    result["quick"] = args.quick
    path = write_result("drift", result, args.results_dir)
    show(result)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
