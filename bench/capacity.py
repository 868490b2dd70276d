"""Capacity: how many concurrent egress adapters this machine sustains on time.

Two ramps, one after the other, each on one source published once from this process:

- `audio`: egress PCM adapters on one tone replayed from pre-encoded Opus packets (the
  publisher encodes nothing). A Packet is late when it reaches the endpoint more than
  100 ms after its expected arrival = the adapter's first Packet's arrival +
  timestamp / 48 kHz (so the network and start-up delay cancel out); a frame that never
  arrives in the window counts as late too.
- `jpeg`: JPEG egress adapters on one 640x480 30 fps VP8 moving pattern (encoded once,
  here). A JPEG is late when it arrives more than 1 s + 100 ms after the previous one;
  a missing one (nothing for 1.1 s at the end of the window) counts as late.

Adapters are added `--step` at a time and kept; after a warm-up, a window measures late
frames and CPU % of one core of the SFU, of the adapter processes (sum), of the worker
pool's parent and of this process, plus the load average. A step passes with fewer than
0.5 % late frames; the ramp stops at the first step that fails, or at `--max`. The
stack's worker pool is as large as the larger `--max`, and the app's create-rate and
adapter limits are lifted for this stack (they would cap the ramp, not the machine).

Before each ramp the previous one's adapter processes must be gone and the load average
fallen (`bench.settle`); a failing step is measured once more before it counts; with
`--runs 2` both ramps run twice and the sustained figures of each run are reported (their
spread: how far one run is from the next on this machine).

    python -m bench.capacity [--step 10] [--max 80] [--jpeg-step 5] [--jpeg-max 40]
                             [--warmup 3] [--window 10] [--quick] [--sfu-nodes 1,2]
                             [--runs 2] [--env SLUICE_EVENT_LOOP=asyncio] [--name N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from bench.harness import (
    SESSION_NICE,
    Stack,
    cpu_seconds,
    egress_item,
    endpoint,
    prioritized_session,
    progress,
    running_stack,
)
from bench.late import LATE_S, LateTally
from bench.media import OpusReplayTrack, PatternVideoTrack
from bench.report import print_table, write_result
from bench.settle import settle
from sluice.media.aiortc_internals import register_codecs
from sluice.media.ice import set_loopback

PASS_LATE_PCT = 0.5
# A ramp starts once the 1-minute load average is below this (or stops falling).
SETTLE_LOAD = 0.5 * (os.cpu_count() or 2)
KINDS = ("audio", "jpeg")
STACK_ENV = {"SLUICE_APP_CREATES_PER_S": "0", "SLUICE_APP_MAX_ADAPTERS": "0"}
# Creates of a step start together: on a busy machine a worker process may take longer
# than the defaults to pick one up and connect (a `no_capacity` then ends a ramp that
# still had free processes and no late frames).
RAMP_ENV = {**STACK_ENV, "SLUICE_PICKUP_TIMEOUT_S": "10", "SLUICE_CONNECT_TIMEOUT_S": "15"}
WHERE = {
    "adapter processes": "one forked process per adapter: receive, decode, send (summed)",
    "sfu process": "`sluice sfu`: forwards the one published track to every adapter",
    "bench process": "publisher (Opus replay, or VP8 encode of 640x480@30) and the endpoint",
}


def _cpu(pids: dict[str, int]) -> dict[str, float | None]:
    """CPU seconds so far per process; None for one that is gone."""
    seconds: dict[str, float | None] = {}
    for name, pid in pids.items():
        try:
            seconds[name] = cpu_seconds(pid)
        except (FileNotFoundError, ProcessLookupError):
            seconds[name] = None
    return seconds


async def measure_step(
    stack: Stack, tally: LateTally, pids: dict[str, int], warmup_s: float, window_s: float
) -> dict[str, Any]:
    """One window over the adapters running: late frames and who used the CPU."""
    await asyncio.sleep(warmup_s)
    sfu_pids = {f"sfu{i}": pid for i, pid in enumerate(stack.sfu_pids())}
    others = {**sfu_pids, "worker": stack.pid("worker"), "bench": os.getpid()}
    before = _cpu({**pids, **others})
    started = time.monotonic()
    tally.start()
    await asyncio.sleep(window_s)
    late = tally.stop(list(pids), window_s)
    elapsed = time.monotonic() - started
    after = _cpu({**pids, **others})
    load = os.getloadavg()
    pct = {
        name: 100.0 * (a - b) / elapsed
        for name in after
        if (a := after[name]) is not None and (b := before[name]) is not None
    }
    gone = [p for p in pids if p not in pct]
    return {
        "n": len(pids),
        **late,
        "passed": late["late_pct"] is not None and late["late_pct"] < PASS_LATE_PCT and not gone,
        "cpu_pct_sfu": round(sum(pct.get(name, 0.0) for name in sfu_pids), 1),
        "cpu_pct_adapters_sum": round(sum(pct.get(p, 0.0) for p in pids), 1),
        "cpu_pct_worker_parent": round(pct.get("worker", 0.0), 1),
        "cpu_pct_bench": round(pct.get("bench", 0.0), 1),
        "loadavg": [round(v, 2) for v in load],
        "adapter_processes_gone": len(gone),
    }


async def ramp(
    stack: Stack,
    kind: str,
    step: int,
    most: int,
    warmup_s: float,
    window_s: float,
    retries: int = 1,
) -> dict[str, Any]:
    """Adds `step` adapters at a time up to `most`; a failing step is measured again
    `retries` times before it counts (a burst of other work on the machine can fail one
    window), and the ramp stops at the first step that still fails."""
    set_loopback(True)
    tally = LateTally(kind)
    # One source per SFU node; adapters take them in turn (each sits on its source's node).
    clients = [stack.sessions_at(url) for url in stack.sfu_urls or [stack.sfu_url]]
    adapters: dict[str, str] = {}  # path → adapter id
    pids: dict[str, int] = {}
    steps: list[dict[str, Any]] = []
    stopped_by = "max"
    async with endpoint(tally.on_message) as ep:
        try:
            if kind == "audio":
                sources = [(await c.publish(OpusReplayTrack(), "mic"))[0] for c in clients]
                track, codec = "mic", "pcm"
            else:
                sources = [
                    (await c.publish(PatternVideoTrack(640, 480), "cam", codec="VP8"))[0]
                    for c in clients
                ]
                track, codec = "cam", "jpeg"
            n = 0
            while n < most:
                target = min(most, n + step)
                paths = [f"{kind}-{i}" for i in range(n, target)]
                created = await asyncio.gather(
                    *(
                        stack.create(
                            egress_item(ep.url(p), sources[i % len(sources)], track, codec)
                        )
                        for i, p in enumerate(paths, start=n)
                    ),
                    return_exceptions=True,
                )
                errors = [str(c) for c in created if isinstance(c, BaseException)]
                for path, c in zip(paths, created, strict=True):
                    if isinstance(c, dict):
                        adapters[path] = c["adapterId"]
                        pids[path] = stack.adapter_pid(c["adapterId"])
                n = target
                if errors:
                    stopped_by = f"create failed at N={n}: {errors[0]}"
                    progress(f"capacity: {kind} N={n}: {stopped_by}")
                    break
                row = await measure_step(stack, tally, pids, warmup_s, window_s)
                tries = [row]
                while not row["passed"] and len(tries) <= retries:
                    progress(f"capacity: {kind} N={n}: {row['late_pct']} % late, measuring again")
                    row = await measure_step(stack, tally, pids, 0.0, window_s)
                    tries.append(row)
                row["tries_late_pct"] = [t["late_pct"] for t in tries]
                steps.append(row)
                verdict = "ok" if row["passed"] else "FAIL"
                progress(
                    f"capacity: {kind} N={n}: {row['late_pct']} % late ({verdict}), "
                    f"sfu {row['cpu_pct_sfu']} %, adapters {row['cpu_pct_adapters_sum']} %, "
                    f"bench {row['cpu_pct_bench']} %, load {row['loadavg'][0]:.2f}"
                )
                if not row["passed"]:
                    stopped_by = f"late at N={n}"
                    break
            views = [await stack.view(a) for a in adapters.values()]
            await stack.close(list(adapters.values()))
        finally:
            for client in clients:
                await client.close()
    passed = [s["n"] for s in steps if s["passed"]]
    return {
        "steps": steps,
        "sustained_n": max(passed, default=0),
        "stopped_by": stopped_by,
        "skipped_total": sum(int(v.get("counters", {}).get("skipped", 0)) for v in views),
        "dropped_total": sum(int(v.get("counters", {}).get("dropped", 0)) for v in views),
        "adapter_pids": list(pids.values()),
    }


async def run(
    stack: Stack,
    limits: dict[str, tuple[int, int]],
    warmup_s: float,
    window_s: float,
    settle_s: float,
    runs: int = 1,
) -> dict[str, Any]:
    """`runs` times both ramps; before each ramp, the previous one's adapter processes
    must be gone and the load fallen (`bench.settle`)."""
    every: list[dict[str, Any]] = []
    pids: list[int] = []
    for number in range(1, runs + 1):
        kinds: dict[str, Any] = {}
        for kind in KINDS:
            settled = await settle(pids, SETTLE_LOAD, timeout_s=settle_s)
            step, most = limits[kind]
            progress(f"capacity: run {number}/{runs}, {kind}: ramp by {step} up to {most}")
            kinds[kind] = await ramp(stack, kind, step, most, warmup_s, window_s)
            kinds[kind]["settled_before"] = settled
            pids = kinds[kind].pop("adapter_pids")
        every.append(kinds)
    await settle(pids, SETTLE_LOAD, timeout_s=settle_s)
    return {
        "kinds": every[0],
        "runs": every,
        "sustained_n_per_run": {k: [r[k]["sustained_n"] for r in every] for k in KINDS},
        "where": WHERE,
        "config": {
            "late_ms": LATE_S * 1000,
            "pass_below_late_pct": PASS_LATE_PCT,
            "steps": {k: {"step": s, "max": m} for k, (s, m) in limits.items()},
            "warmup_s": warmup_s,
            "window_s": window_s,
            "retries_of_a_failing_step": 1,
            "settle": {"load_below": SETTLE_LOAD, "timeout_s": settle_s},
            "worker_pool": stack.workers,
            "stack_env": RAMP_ENV,
            "cpus": os.cpu_count(),
        },
    }


def show(result: dict[str, Any]) -> None:
    header = [
        "kind",
        "N",
        "late %",
        "worst ms",
        "ok",
        "sfu cpu%",
        "adapters cpu%",
        "per adapter",
        "bench cpu%",
        "load 1m",
    ]
    rows = []
    for kind, r in result["kinds"].items():
        for s in r["steps"]:
            rows.append(
                [
                    kind,
                    s["n"],
                    s["late_pct"],
                    s["worst_late_ms"],
                    "yes" if s["passed"] else "NO",
                    s["cpu_pct_sfu"],
                    s["cpu_pct_adapters_sum"],
                    s["cpu_pct_adapters_sum"] / s["n"],
                    s["cpu_pct_bench"],
                    s["loadavg"][0],
                ]
            )
    print_table("capacity ramp (CPU % of one core; late = > 100 ms behind)", header, rows)
    for kind, r in result["kinds"].items():
        print(f"{kind}: sustained N = {r['sustained_n']} (stopped: {r['stopped_by']})")
    for kind, per_run in result.get("sustained_n_per_run", {}).items():
        if len(per_run) > 1:
            print(f"{kind}: sustained N per run {per_run} (spread {max(per_run) - min(per_run)})")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.capacity", description=__doc__)
    parser.add_argument("--step", type=int, default=10, help="audio adapters added per step")
    parser.add_argument("--max", type=int, default=80, help="most audio adapters")
    parser.add_argument("--jpeg-step", type=int, default=5, help="JPEG adapters per step")
    parser.add_argument("--jpeg-max", type=int, default=40, help="most JPEG adapters")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before a window")
    parser.add_argument("--window", type=float, default=10.0, help="measured seconds a step")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1-2 adapters, 2 s")
    parser.add_argument(
        "--sfu-nodes",
        default="",
        help="instead: the audio ramp once per SFU node count given (e.g. 1,2), each on a "
        "stack of its own with one source per node; writes capacity_sfu_nodes.json",
    )
    parser.add_argument(
        "--priority",
        action="store_true",
        help="run this session at autogroup nice -19 (Linux, root; see "
        "bench.harness.prioritized_session)",
    )
    parser.add_argument("--runs", type=int, default=1, help="both ramps this many times")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="SLUICE_NAME=value",
        help="a setting for the stack's processes (repeatable), e.g. SLUICE_EVENT_LOOP=asyncio",
    )
    parser.add_argument(
        "--name", default="capacity", help="result file name (bench/results/<name>.json)"
    )
    parser.add_argument("--results-dir", type=Path, default=None)
    return parser.parse_args(argv)


def by_sfu_nodes(args: argparse.Namespace, counts: list[int]) -> dict[str, Any]:
    """The audio ramp with each number of SFU nodes, one after the other."""
    ramps: dict[str, Any] = {}
    for count in counts:
        with running_stack(workers=args.max, settings=RAMP_ENV, sfu_nodes=count) as stack:
            progress(f"capacity: audio with {count} SFU node(s), by {args.step} up to {args.max}")
            ramps[str(count)] = asyncio.run(
                ramp(stack, "audio", args.step, args.max, args.warmup, args.window)
            )
    return {
        "sustained_n": {count: r["sustained_n"] for count, r in ramps.items()},
        "session_nice": SESSION_NICE if args.priority else 0,
        "ramps": ramps,
        "config": {
            "late_ms": LATE_S * 1000,
            "pass_below_late_pct": PASS_LATE_PCT,
            "step": args.step,
            "max": args.max,
            "warmup_s": args.warmup,
            "window_s": args.window,
            "cpus": os.cpu_count(),
        },
    }


def main(argv: list[str] | None = None, stack: Stack | None = None) -> dict[str, Any]:
    """Runs on its own stack: its worker pool must hold `--max` adapters at once."""
    register_codecs()  # this process makes peer connections of its own
    args = parse(argv)
    if args.sfu_nodes:
        counts = [int(count) for count in args.sfu_nodes.split(",")]
        with prioritized_session() if args.priority else contextlib.nullcontext():
            compared = by_sfu_nodes(args, counts)
        path = write_result("capacity_sfu_nodes", compared, args.results_dir)
        show({"kinds": {f"audio, {k} node(s)": r for k, r in compared["ramps"].items()}})
        print(f"written to {path}")
        return compared
    if args.quick:
        limits, warmup, window, settle_s = {"audio": (1, 2), "jpeg": (1, 1)}, 1.0, 2.0, 1.0
    else:
        limits = {"audio": (args.step, args.max), "jpeg": (args.jpeg_step, args.jpeg_max)}
        warmup, window, settle_s = args.warmup, args.window, 120.0
    workers = max(most for _, most in limits.values())
    env = dict(setting.split("=", 1) for setting in args.env)
    with contextlib.ExitStack() as exit_stack:
        if args.priority:
            exit_stack.enter_context(prioritized_session())
        if stack is None or stack.workers < workers or env:
            stack = exit_stack.enter_context(
                running_stack(workers=workers, settings={**RAMP_ENV, **env})
            )
        result = asyncio.run(run(stack, limits, warmup, window, settle_s, args.runs))
    result["settings"] = env
    result["session_nice"] = SESSION_NICE if args.priority else 0
    result["quick"] = args.quick
    path = write_result(args.name, result, args.results_dir)
    show(result)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
