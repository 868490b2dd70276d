"""SFU scale-out: forwarded audio streams one node sustains against two, and a cascade hop.

1. `ramp`, side by side in one run: a stack with one SFU node, then one with two. Each
   node gets one publisher (pre-encoded Opus, 20 ms frames, from this process);
   subscribers are added `--step` at a time, spread evenly over the nodes (each pulls
   its own node's publisher: no cascade), until a step has 0.5 % or more of its frames
   late by over 100 ms, or `--max`. A subscriber here is cheap on purpose: its
   datagrams are taken off aiortc's receive path (`aiortc_internals.divert_rtp`) and
   only their RTP headers (which SRTP leaves readable) are timed, so on two cores the
   load generator does not take the CPU the second node needs. A frame is late when its
   delay (arrival - when the publisher sent it, found by timestamp) exceeds the
   subscriber's smallest delay by over 100 ms; frames that never arrive count late.
   The result: streams sustained with one node (n1) and two (n2), and n2 / n1.
2. `cascade`, on the two-node stack: `--cascade-n` publishers on node 1, each first
   with one subscriber on node 1 (direct), then also one on node 2 (a cascade per
   track). CPU per stream on each node from the windows before and after; latency
   publisher frame → subscriber for both paths at once, paired per frame (each frame
   carries its number, and the SFU never looks inside a payload).

    python -m bench.sfu_scale [--step 10] [--max 400] [--cascade-n 10]
                              [--rounds 1] [--priority] [--warmup 3] [--window 8]
                              [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import fractions
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import av
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from bench.harness import (
    SESSION_NICE,
    CpuWindow,
    Stack,
    prioritized_session,
    progress,
    running_stack,
)
from bench.media import FRAME, FRAME_S, RATE, OpusReplayTrack
from bench.report import distribution, print_table, ratio, write_result
from sluice.media.aiortc_internals import divert_rtp, register_codecs
from sluice.media.frames import TimestampUnwrapper
from sluice.media.ice import set_loopback
from sluice.media.types import EncodedFrame

LATE_S = 0.1
PASS_LATE_PCT = 0.5
BATCH = 10  # subscribers negotiated at once
NODE_COUNTS = (1, 2)
WHERE = {
    "sfu nodes": "`sluice sfu` node processes: RTP passthrough to every subscriber",
    "bench process": "publishers and subscribers (ramp: RTP headers timed off the socket)",
}


# --- cheap subscribers --------------------------------------------------------------------


class SentTimes(OpusReplayTrack):
    """The replayed tone, remembering when each frame left (`sent[n]`, monotonic)."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[float] = []

    async def recv(self) -> av.Packet[Any]:
        packet = await super().recv()
        self.sent.append(time.monotonic())
        return packet


class Timed:
    """One subscriber's RTP arrivals; late ones counted while `tally.measuring`.

    A frame's delay is measured from when the publisher sent it, so the publisher's own
    scheduling (it shares this process) is not blamed on the SFU: the subscriber's first
    frame is taken to be the last one sent before it arrived, the next ones follow by
    timestamp. That guess may be too new (a frame that cannot have been sent yet moves
    it back); any error is the same for every frame, and delays are counted from the
    subscriber's smallest one.
    """

    __slots__ = ("_first", "_source", "_unwrap", "base", "late", "received", "tally", "worst_s")

    def __init__(self, tally: Tally, source: SentTimes) -> None:
        self.tally = tally
        self._source = source
        self._unwrap = TimestampUnwrapper()
        self._first: tuple[int, int] | None = None  # (timestamp, frame number) of the first
        self.base = float("inf")
        self.received = self.late = 0
        self.worst_s = 0.0

    def on_datagram(self, data: bytes, now: float) -> None:
        if len(data) < 12 or 192 <= data[1] <= 223:
            return  # RTCP (RFC 5761: packet types 192-223 in the second byte)
        ts = self._unwrap.unwrap(int.from_bytes(data[4:8], "big"))
        sent = self._source.sent
        if self._first is None:
            self._first = (ts, bisect.bisect_right(sent, now) - 1)
        frame = self._first[1] + (ts - self._first[0]) // FRAME
        if frame >= len(sent):
            # The first frame was older than guessed: this one cannot be unsent yet.
            shift = frame - len(sent) + 1
            self._first = (self._first[0], self._first[1] - shift)
            frame -= shift
        if frame < 0:
            return
        offset = now - sent[frame]
        if offset < self.base:
            self.base = offset
        if self.tally.measuring:
            self.received += 1
            behind = offset - self.base
            if behind > LATE_S:
                self.late += 1
            if behind > self.worst_s:
                self.worst_s = behind


class Tally:
    """Every cheap subscriber of a ramp."""

    def __init__(self) -> None:
        self.measuring = False
        self.subscribers: list[Timed] = []

    def new(self, source: SentTimes) -> Timed:
        timed = Timed(self, source)
        self.subscribers.append(timed)
        return timed

    def start(self) -> None:
        for sub in self.subscribers:
            sub.received = sub.late = 0
            sub.worst_s = 0.0
        self.measuring = True

    def stop(self, window_s: float) -> dict[str, Any]:
        self.measuring = False
        due = round(window_s / FRAME_S)
        late = sum(s.late + max(0, due - s.received) for s in self.subscribers)
        expected = due * len(self.subscribers)
        return {
            "frames_expected": expected,
            "frames_received": sum(s.received for s in self.subscribers),
            "frames_late": late,
            "late_pct": round(100.0 * late / expected, 3) if expected else None,
            "worst_late_ms": round(max((s.worst_s for s in self.subscribers), default=0) * 1e3),
        }


async def ramp(
    stack: Stack, step: int, most: int, warmup_s: float, window_s: float
) -> dict[str, Any]:
    """Adds subscribers spread over every node of `stack` until a step fails."""
    set_loopback(True)
    nodes = len(stack.sfu_urls)
    clients = [stack.sessions_at(url) for url in stack.sfu_urls]
    tally = Tally()
    steps: list[dict[str, Any]] = []
    stopped_by = "max"
    try:
        tracks = [SentTimes() for _ in clients]
        sources = [(await c.publish(t, "src"))[0] for c, t in zip(clients, tracks, strict=True)]
        n = 0
        while n < most:
            target = min(most, n + step)
            for start in range(n, target, BATCH):
                await asyncio.gather(
                    *(
                        _subscribe(clients[k], sources[k], tally.new(tracks[k]))
                        for k in (j % nodes for j in range(start, min(target, start + BATCH)))
                    )
                )
            n = target
            await asyncio.sleep(warmup_s)
            pids = {f"node{i + 1}": pid for i, pid in enumerate(stack.sfu_pids())}
            cpu = CpuWindow({**pids, "bench": os.getpid()})
            cpu.start()
            tally.start()
            await asyncio.sleep(window_s)
            late = tally.stop(window_s)
            pct = cpu.stop()
            row = {
                "n": n,
                **late,
                "passed": late["late_pct"] is not None and late["late_pct"] < PASS_LATE_PCT,
                "cpu_pct": {name: round(value, 1) for name, value in pct.items()},
                "loadavg_1m": round(os.getloadavg()[0], 2),
            }
            steps.append(row)
            progress(
                f"sfu_scale: {nodes} node(s), N={n}: {late['late_pct']} % late "
                f"({'ok' if row['passed'] else 'FAIL'}), cpu {row['cpu_pct']}, "
                f"load {row['loadavg_1m']}"
            )
            if not row["passed"]:
                stopped_by = f"late at N={n}"
                break
    finally:
        for client in clients:
            await client.close()
    passed = [s["n"] for s in steps if s["passed"]]
    sustained = max(passed, default=0)
    return {"nodes": nodes, "steps": steps, "sustained_n": sustained, "stopped_by": stopped_by}


async def _subscribe(client: Any, source: str, timed: Timed) -> None:
    peer = await client.new_peer()
    await peer.pull(source, "src", kind="audio")
    divert_rtp(peer.pc.getTransceivers()[0].receiver, timed.on_datagram)


# --- the cascade hop ------------------------------------------------------------------------


class NumberedTrack(MediaStreamTrack):
    """20 ms audio frames whose payload is their number: the SFU forwards bytes as they are,
    so a tapped subscriber can tell which frame arrived. `sent` holds when each left."""

    kind = "audio"

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[float] = []
        self._filler = bytes(150)  # about an Opus frame's size at 64 kbit/s

    async def recv(self) -> av.Packet[Any]:
        if self.readyState != "live":
            raise MediaStreamError
        n = len(self.sent)
        if n:
            wait = self.sent[0] + n * FRAME_S - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        packet = av.Packet(n.to_bytes(8, "big") + self._filler)
        packet.pts = n * FRAME
        packet.time_base = fractions.Fraction(1, RATE)
        self.sent.append(time.monotonic())
        return packet


def _latency_sink(track: NumberedTrack, into: dict[int, float]) -> Callable[[EncodedFrame], None]:
    def on_frame(frame: EncodedFrame) -> None:
        n = int.from_bytes(frame.data[:8], "big")
        if n < len(track.sent):
            into[n] = frame.received_at - track.sent[n]

    return on_frame


async def cascade(stack: Stack, n: int, warmup_s: float, window_s: float) -> dict[str, Any]:
    """CPU per stream on both nodes and latency of the direct and the cascaded path."""
    set_loopback(True)
    node1, node2 = (stack.sessions_at(url) for url in stack.sfu_urls[:2])
    pids = dict(zip(("node1", "node2"), stack.sfu_pids(), strict=False))
    tracks = [NumberedTrack() for _ in range(n)]
    latency: dict[str, defaultdict[int, dict[int, float]]] = {
        "direct": defaultdict(dict),
        "cascade": defaultdict(dict),
    }

    async def window() -> dict[str, float]:
        await asyncio.sleep(warmup_s)
        cpu = CpuWindow(pids)
        cpu.start()
        await asyncio.sleep(window_s)
        return cpu.stop()

    try:
        sources = [(await node1.publish(t, "src"))[0] for t in tracks]
        idle = await window()
        for i, (sid, track) in enumerate(zip(sources, tracks, strict=True)):
            sink = _latency_sink(track, latency["direct"][i])
            await node1.pull(sid, "src", kind="audio", on_frame=sink)
        direct = await window()
        for i, (sid, track) in enumerate(zip(sources, tracks, strict=True)):
            sink = _latency_sink(track, latency["cascade"][i])
            await node2.pull(sid, "src", kind="audio", on_frame=sink)
        both = await window()
    finally:
        await node2.close()
        await node1.close()
    added = [
        latency["cascade"][i][frame] - latency["direct"][i][frame]
        for i in range(n)
        for frame in latency["cascade"][i].keys() & latency["direct"][i].keys()
    ]
    direct_ms = [v for per in latency["direct"].values() for v in per.values()]
    cascade_ms = [v for per in latency["cascade"].values() for v in per.values()]
    return {
        "streams": n,
        "cpu_pct": {"idle": _rounded(idle), "direct": _rounded(direct), "cascade": _rounded(both)},
        "cpu_pct_per_stream": {
            "direct_on_node1": round((direct["node1"] - idle["node1"]) / n, 3),
            "cascade_on_node1": round((both["node1"] - direct["node1"]) / n, 3),
            "cascade_on_node2": round((both["node2"] - direct["node2"]) / n, 3),
        },
        "latency_ms": {
            "direct": distribution(direct_ms, 1000),
            "cascade": distribution(cascade_ms, 1000),
            "added_by_the_hop": distribution(added, 1000),
        },
    }


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {name: round(value, 1) for name, value in values.items()}


# --- the run --------------------------------------------------------------------------------


def run(args: argparse.Namespace, log_dir: Path | None) -> dict[str, Any]:
    """`--rounds` times one node then two, alternating, so that the other load on the
    machine weighs on both alike; the figures are the (lower) medians over the rounds."""
    ramps: dict[str, list[dict[str, Any]]] = {str(nodes): [] for nodes in NODE_COUNTS}
    result: dict[str, Any] = {}
    for round_ in range(args.rounds):
        for nodes in NODE_COUNTS:
            with running_stack(workers=0, log_dir=log_dir, sfu_nodes=nodes) as stack:
                progress(f"sfu_scale: round {round_ + 1}, {nodes} node(s), by {args.step}")
                ramps[str(nodes)].append(
                    asyncio.run(ramp(stack, args.step, args.max, args.warmup, args.window))
                )
                if nodes == 2 and "cascade" not in result:
                    progress(f"sfu_scale: cascade hop, {args.cascade_n} streams")
                    result["cascade"] = asyncio.run(
                        cascade(stack, args.cascade_n, args.warmup, args.window)
                    )
    # The lower median: always a step that was measured (an int), never between two.
    streams = {k: statistics.median_low(r["sustained_n"] for r in rs) for k, rs in ramps.items()}
    return {
        "forwarded_streams": streams,
        "ratio": ratio(streams["2"], streams["1"]),
        "per_round": {k: [r["sustained_n"] for r in runs] for k, runs in ramps.items()},
        "ramps": ramps,
        **result,
        "where": WHERE,
        "config": {
            "late_ms": LATE_S * 1000,
            "pass_below_late_pct": PASS_LATE_PCT,
            "step": args.step,
            "max": args.max,
            "rounds": args.rounds,
            "session_nice": SESSION_NICE if args.priority else 0,
            "warmup_s": args.warmup,
            "window_s": args.window,
            "cpus": os.cpu_count(),
        },
    }


def show(result: dict[str, Any]) -> None:
    rows = []
    for nodes, runs in result["ramps"].items():
        for s in (step for r in runs for step in r["steps"]):
            cpu = s["cpu_pct"]
            nodes_cpu = " + ".join(str(v) for k, v in cpu.items() if k.startswith("node"))
            ok = "yes" if s["passed"] else "NO"
            late, worst, load = s["late_pct"], s["worst_late_ms"], s["loadavg_1m"]
            rows.append([nodes, s["n"], late, worst, ok, nodes_cpu, cpu["bench"], load])
    header = ["nodes", "N", "late %", "worst ms", "ok", "node cpu%", "bench cpu%", "load"]
    print_table("forwarded audio streams (late = > 100 ms behind)", header, rows)
    streams = result["forwarded_streams"]
    print(
        f"sustained (median of {result['config']['rounds']} rounds): 1 node {streams['1']}, "
        f"2 nodes {streams['2']}, ratio {result['ratio']} (per round: {result['per_round']})"
    )
    if "cascade" in result:
        c = result["cascade"]
        print(f"cascade, CPU % per stream: {c['cpu_pct_per_stream']}")
        hop = c["latency_ms"]["added_by_the_hop"]
        print(f"cascade hop adds {hop['median']} ms median ({hop['p95']} ms p95)")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.sfu_scale", description=__doc__)
    parser.add_argument("--step", type=int, default=10, help="subscribers added per step")
    parser.add_argument("--max", type=int, default=400, help="most subscribers")
    parser.add_argument("--cascade-n", type=int, default=10, help="cascaded streams")
    parser.add_argument("--rounds", type=int, default=1, help="one node then two, this often")
    parser.add_argument(
        "--priority",
        action="store_true",
        help=f"run this session (the nodes and this process) at autogroup nice {SESSION_NICE} "
        "(Linux, root), so that other work on a shared machine does not decide the result",
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before a window")
    parser.add_argument("--window", type=float, default=8.0, help="measured seconds a step")
    parser.add_argument("--quick", action="store_true", help="smoke run: 2 subscribers, 1 s")
    parser.add_argument("--results-dir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, stack: Stack | None = None) -> dict[str, Any]:
    """Runs on stacks of its own (one node, then two); `stack` is not used."""
    register_codecs()  # this process makes peer connections of its own
    args = parse(argv)
    if args.quick:
        args.step, args.max, args.cascade_n, args.warmup, args.window = 2, 2, 1, 0.5, 1.0
    with prioritized_session() if args.priority else contextlib.nullcontext():
        result = run(args, None)
    result["quick"] = args.quick
    path = write_result("sfu_scale", result, args.results_dir)
    show(result)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
