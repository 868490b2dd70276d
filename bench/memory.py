"""Where an adapter process's own memory comes from: over its create, and step by step.

An adapter process is a forked copy of its worker host; its private memory is the pages
it has written since (copied on write), and everything else it shares. Two measurements:

- `curve`: a stack of its own whose two worker processes each have a standby forked ahead
  (a pipeline process waiting for its adapter). Their private memory and PSS are read
  from `/proc/<pid>/smaps_rollup` every few milliseconds, from before one egress PCM
  adapter is created until `--after` seconds after the create answered (the adapter is
  active then); the curve of the standby that took the adapter is kept.
- `steps`: a process prepared as the pool's parent prepares itself before it forks
  (`worker.pool.prepare_to_fork`: imports, the rehearsal, `gc.freeze()`) forks a child
  that reads its own private memory after each step of a standby's preparation
  (`worker.jobs.PipelineProcess`).

    python -m bench.memory [--after 3] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from bench.cost import publish_for
from bench.harness import (
    Stack,
    egress_item,
    endpoint,
    memory_kib,
    progress,
    running_stack,
)
from bench.report import print_table, write_result
from sluice.media.aiortc_internals import register_codecs
from sluice.media.ice import set_loopback

SAMPLE_EVERY_S = 0.003
WORKERS = 2  # each with its standby: PSS splits the shared pages among these processes
WHERE = {
    "standby": "a pipeline process forked ahead by a worker process, waiting for its adapter",
    "steps": "a child forked from a process prepared as the pool's parent, step by step",
}


def children(pid: int) -> list[int]:
    """The pids `pid`'s threads forked, from /proc (empty when it is gone)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(child) for child in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def standbys(stack: Stack) -> list[int]:
    """Every worker process's standby: the pool's children's children."""
    return [pid for host in children(stack.pid("worker")) for pid in children(host)]


class Sampler:
    """Private memory and PSS of some pids every `SAMPLE_EVERY_S`, on a thread of its own
    (reading /proc blocks; the event loop is busy creating the adapter meanwhile)."""

    def __init__(self, pids: list[int]) -> None:
        self.samples: dict[int, list[tuple[float, float, float]]] = {pid: [] for pid in pids}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            for pid, samples in self.samples.items():
                try:
                    memory = memory_kib(pid)
                except OSError:
                    continue
                samples.append((time.monotonic(), memory["private_kib"], memory["pss_kib"]))
            self._stop.wait(SAMPLE_EVERY_S)


async def wait_for_standbys(stack: Stack, count: int, timeout_s: float = 20) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while len(found := standbys(stack)) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(found)} of {count} standbys forked")
        await asyncio.sleep(0.1)
    return found


def thinned(points: list[tuple[float, float, float]], min_step_mib: float) -> list[list[float]]:
    """The points where private memory moved by `min_step_mib` or more, and the last one."""
    kept: list[list[float]] = []
    for ms, private, pss in points:
        if not kept or abs(private - kept[-1][1]) >= min_step_mib:
            kept.append([round(ms, 1), round(private, 2), round(pss, 2)])
    if points and kept[-1][0] != round(points[-1][0], 1):
        ms, private, pss = points[-1]
        kept.append([round(ms, 1), round(private, 2), round(pss, 2)])
    return kept


async def curve(stack: Stack, after_s: float) -> dict[str, Any]:
    """One egress PCM adapter's memory from before its create to `after_s` after."""
    set_loopback(True)
    sessions = stack.sessions()
    try:
        async with endpoint() as ep:
            session_id = await publish_for(sessions, "egress_pcm")
            waiting = await wait_for_standbys(stack, stack.workers)
            await asyncio.sleep(0.5)  # the standbys' own preparation done
            with Sampler(waiting) as sampler:
                await asyncio.sleep(0.2)
                started = time.monotonic()
                answer = await stack.create(egress_item(ep.url("m"), session_id, "mic", "pcm"))
                answered = time.monotonic()
                await asyncio.sleep(after_s)
            pid = stack.adapter_pid(answer["adapterId"])
            await stack.close([answer["adapterId"]])
    finally:
        await sessions.close()
    if pid not in sampler.samples:
        raise RuntimeError(f"the adapter ran in {pid}, not in a standby sampled")
    mib = [
        ((t - started) * 1000, private / 1024, pss / 1024)
        for t, private, pss in sampler.samples[pid]
    ]
    before = [p for p in mib if p[0] < 0]
    return {
        "pid": pid,
        "answered_ms": round((answered - started) * 1000, 1),
        "standby_private_mib": round(before[-1][1], 2) if before else None,
        "at_answer_private_mib": round(
            max(p[1] for p in mib if p[0] <= (answered - started) * 1000), 2
        ),
        "end_private_mib": round(mib[-1][1], 2),
        "end_pss_mib": round(mib[-1][2], 2),
        "samples": len(mib),
        "curve_ms_private_pss_mib": thinned(mib, 0.1),
    }


def private_mib() -> float:
    """This process's private memory (clean and dirty), MiB."""
    return memory_kib(os.getpid())["private_kib"] / 1024


def steps_child(report: int) -> None:
    """In the forked child: a standby's preparation, step by step; never returns."""
    from worker.jobs import PipelineProcess

    steps = [("forked", private_mib())]
    process = PipelineProcess()
    steps.append(
        ("PipelineProcess(): settings, logging, event loop runner, Redis client", private_mib())
    )
    process.connect()
    steps.append(("connect(): the loop's first run, a Redis PING", private_mib()))
    process.connect()
    steps.append(("connect() again", private_mib()))
    os.write(report, json.dumps(steps).encode())
    os._exit(0)


def steps_main() -> None:
    """`--steps-child`: prepares as the pool's parent does, forks, prints the child's steps."""
    from sluice.config import get_settings
    from worker.pool import prepare_to_fork

    prepare_to_fork(get_settings())
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(reader)
            steps_child(writer)
        finally:  # whatever happened, the child never returns into the parent's code
            os._exit(1)
    os.close(writer)
    with os.fdopen(reader, "rb") as pipe:
        data = pipe.read()
    os.waitpid(pid, 0)
    if not data:
        sys.exit("the forked child reported nothing (its error is above)")
    print(json.dumps({"parent_private_mib": round(private_mib(), 2), "steps": json.loads(data)}))


def steps(stack: Stack) -> dict[str, Any]:
    env = {**stack.env, "SLUICE_LOG_LEVEL": "warning"}  # the stack's Redis, SFU and app
    command = [sys.executable, "-m", "bench.memory", "--steps-child"]
    done = subprocess.run(command, env=env, capture_output=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"bench.memory --steps-child failed: {done.stderr.decode()[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    previous = None
    for step in result["steps"]:
        step.append(None if previous is None else round(step[1] - previous, 2))
        previous = step[1]
        step[1] = round(step[1], 2)
    return result


def show(result: dict[str, Any]) -> None:
    c = result["curve"]
    print_table(
        "an egress PCM adapter's private memory (MiB), from its standby to after its create",
        [
            "standby",
            "at the answer",
            f"{result['config']['after_s']:g} s after",
            "PSS then",
            "answered (ms)",
        ],
        [
            [
                c["standby_private_mib"],
                c["at_answer_private_mib"],
                c["end_private_mib"],
                c["end_pss_mib"],
                c["answered_ms"],
            ]
        ],
    )
    print_table(
        "a standby's preparation, step by step (a child of a host prepared as the pool's)",
        ["step", "private MiB", "added"],
        [[name, mib, added] for name, mib, added in result["steps"]["steps"]],
    )


def main(argv: list[str] | None = None, stack: Stack | None = None) -> dict[str, Any] | None:
    """Runs on a stack of its own (`stack` is not used): two fresh worker processes, so
    that the standby sampled is one no earlier adapter left, and the figures are the
    same whether it runs alone or in `python -m bench`."""
    parser = argparse.ArgumentParser(prog="python -m bench.memory", description=__doc__)
    parser.add_argument("--after", type=float, default=3.0, help="seconds after the answer")
    parser.add_argument("--quick", action="store_true", help="smoke run: 0.5 s after")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--steps-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.steps_child:
        steps_main()
        return None
    register_codecs()
    after_s = 0.5 if args.quick else args.after
    with running_stack(workers=WORKERS) as own:
        progress("memory: the curve of one create")
        result: dict[str, Any] = {"curve": asyncio.run(curve(own, after_s))}
        progress("memory: a standby's preparation, step by step")
        result["steps"] = steps(own)
    result |= {
        "where": WHERE,
        "config": {"after_s": after_s, "worker_processes": WORKERS},
        "quick": args.quick,
    }
    path = write_result("memory", result, args.results_dir)
    show(result)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
