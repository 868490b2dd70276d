"""A lever measured side by side: two worker hosts on one stack that differ in one thing.

Both hosts take adapters from the same queue, each with `-n` processes; `2n` adapters of
a kind are created one after another, so each host runs `n` of them, and which one ran
where is read from the process tree. One CPU window measures all of them at once: the
machine's other load weighs on both sides alike, and the ratio B/A is the figure to
trust on a shared machine (absolute percentages move with that load).

Levers (`--lever`), A against B:

- `event_loop`: `SLUICE_EVENT_LOOP=asyncio` against `uvloop`.
- `python`: pipelines on this interpreter against another one's virtualenv
  (`--python-venv`, e.g. CPython 3.13: `pyenv`'s, `pip install -c constraints.txt -e .`),
  both on the default loop.
- `commit`: the worker host's code at another commit (`--baseline`, default `HEAD`: what
  is committed against what is in the tree) against this tree's, same interpreter and
  settings: a code change measured side by side. The baseline is checked out once into
  `.sluice/levers-<commit>` (a git worktree) and put first on that host's `PYTHONPATH`.

Per kind (`bench.cost`'s sources and endpoints): CPU % of one core per adapter process
(and how much of it the kernel spent: socket reads and writes, polls),
PSS and private memory at the start and the end of the window (`--window 600`: a
fresh process against one 10 minutes old), create → active (the create call's
time, `bench.control`), messages per second at the endpoint (the same on both sides, or
a side fell behind). `--profile` records one adapter of each side with py-spy during the
window (`levers-<lever>-<kind>-<side>.txt`, collapsed stacks) and prints where their
samples went.

    python -m bench.levers --lever event_loop [-n 5] [--types egress_pcm,ingest]
                           [--warmup 4] [--window 20] [--profile] [--priority] [--quick]
    python -m bench.levers --lever commit --baseline 3f2a1bc [...]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

from bench.cost import INGEST_FORMATS, Tally, create_adapters, publish_for, tone_feeder
from bench.harness import (
    BIN,
    SESSION_NICE,
    CpuWindow,
    Stack,
    WorkerHost,
    endpoint,
    memory_kib,
    prioritized_session,
    progress,
    running_stack,
    wait_with_progress,
)
from bench.report import RESULTS_DIR, distribution, print_table, ratio, write_result
from bench.settle import alive, settle
from sluice.media.aiortc_internals import register_codecs
from sluice.media.ice import set_loopback

KINDS = ("egress_pcm", "ingest", "ingest_stereo", "jpeg_640x480")
DEFAULT_KINDS = ("egress_pcm", "ingest", "jpeg_640x480")
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_VENV = ROOT / ".sluice" / "py313"
# Where a profile's samples went: a sample counts for the first of these that matches,
# looking from the leaf up past the event loop's own frames (`LOOP_FRAMES`), so a socket
# write counts for whoever wrote. Samples with nothing but the loop are its poll and, under
# uvloop, its C code (reading datagrams, running callbacks).
AREAS = (
    (
        "decode / encode / resample (PyAV, soxr)",
        ("av/", "soxr", "opus_pcm", "opus_encode", "snapshots", "resampl", "codecs/"),
    ),
    ("WebSocket send and receive", ("websockets/",)),
    ("SRTP / DTLS", ("rtcdtlstransport", "pylibsrtp")),
    ("RTP receive (receiver, tap)", ("rtcrtpreceiver", "aiortc_internals", "frames.py", "rtp.py")),
    ("RTP send (sender, packet track)", ("rtcrtpsender", "packet_track")),
    ("ICE / datagrams (aioice)", ("aioice/",)),
    ("thread pool handoff (JPEG work off the loop)", ("concurrent/futures",)),
    ("Sluice's own (framing, pacing, heartbeats)", ("worker/", "sluice/")),
)
LOOP_FRAMES = ("asyncio/", "selectors.py", "contextlib.py", "uvloop", "threading.py")
LOOP_ONLY = "event loop alone (poll, uvloop's C code)"


def sides(lever: str, venv: Path, baseline: str) -> dict[str, WorkerHost]:
    """Side A (the baseline) first, then B."""
    if lever == "event_loop":
        return {
            "asyncio": WorkerHost({"SLUICE_EVENT_LOOP": "asyncio"}),
            "uvloop": WorkerHost({"SLUICE_EVENT_LOOP": "uvloop"}),
        }
    if lever == "commit":
        commit = resolve_commit(baseline)
        return {commit[:9]: WorkerHost(code_dir=checkout(commit)), "tree": WorkerHost()}
    return {"py311": WorkerHost(), "py313": WorkerHost(bin_dir=venv / "bin")}


def resolve_commit(rev: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--verify", f"{rev}^{{commit}}"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if out.returncode:
        raise SystemExit(f"bench.levers: no commit {rev!r}: {out.stderr.strip()}")
    return out.stdout.strip()


def checkout(commit: str) -> Path:
    """A worktree of `commit` under `.sluice/` (made once, reused by later runs)."""
    path = ROOT / ".sluice" / f"levers-{commit[:12]}"
    if not (path / "worker").is_dir():
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--force", "--detach", str(path), commit],
            check=True, stdout=subprocess.DEVNULL,
        )  # fmt: skip
    return path


def start_profiles(
    pids: dict[str, int], by_side: dict[str, list[str]], seconds: float, out: Path, tag: str
) -> list[tuple[str, Path, subprocess.Popen[bytes]]]:
    """py-spy on the first adapter of each side for `seconds`, collapsed stacks."""
    started = []
    for side, paths in by_side.items():
        if not paths:
            continue
        path = out / f"levers-{tag}-{side}.txt"
        command = [str(BIN / "py-spy"), "record", "--pid", str(pids[paths[0]])]
        command += ["--duration", str(int(seconds)), "--format", "raw", "--output", str(path)]
        command += ["--nonblocking", "--rate", "200"]
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        started.append((side, path, process))
    return started


def profile_areas(path: Path) -> dict[str, float]:
    """Share of samples per area (`AREAS`), from a collapsed-stacks file."""
    counts: Counter[str] = Counter()
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        runners = [i for i, f in enumerate(frames) if "asyncio/runners.py" in f]
        frames = frames[runners[-1] + 1 :] if runners else frames  # drop the entry point's
        frames = [f for f in frames[::-1] if not any(x in f for x in LOOP_FRAMES)]
        area = LOOP_ONLY if not frames else "other"
        for frame in frames[:1]:  # the innermost frame outside the loop
            area = next((name for name, needles in AREAS if any(n in frame for n in needles)), area)
        counts[area] += samples
    return {area: round(100.0 * n / total, 1) for area, n in counts.most_common()} if total else {}


async def measure(
    stack: Stack, kind: str, n: int, warmup_s: float, window_s: float, profile: Path | None
) -> dict[str, Any]:
    set_loopback(True)
    tally = Tally()
    sessions = stack.sessions()
    feeder = tone_feeder(kind) if kind in INGEST_FORMATS else None
    async with endpoint(tally.on_message, feeder) as ep:
        try:
            session_id = await publish_for(sessions, kind)
            created = await create_adapters(stack, kind, ep, session_id, 2 * n)
            adapters = {path: c.adapter_id for path, c in created.items()}
            recorded = {path: stack.adapter_pid(a) for path, a in adapters.items()}
            host = {path: (stack.host_of(pid) or "?") for path, pid in recorded.items()}
            by_side: dict[str, list[str]] = {}
            for path, name in host.items():
                by_side.setdefault(name.removeprefix("worker-"), []).append(path)
            progress(f"levers: {kind}: {', '.join(f'{s} {len(p)}' for s, p in by_side.items())}")
            await asyncio.sleep(warmup_s)
            # An adapter reaped under load (`worker_lost`: it missed its heartbeats) is
            # counted, not measured.
            pids = {path: pid for path, pid in recorded.items() if alive([pid])}
            lost = {side: sum(p not in pids for p in paths) for side, paths in by_side.items()}
            by_side = {side: [p for p in paths if p in pids] for side, paths in by_side.items()}
            window = CpuWindow(pids)
            memory_start = {path: memory_kib(pid) for path, pid in pids.items()}
            counts_before = dict(tally.count)
            load_before = os.getloadavg()
            profiles = start_profiles(pids, by_side, window_s, profile, kind) if profile else []
            window.start()
            await wait_with_progress(window_s, f"levers: {kind} window")
            cpu = window.stop()
            system = window.system_pct
            memory = {path: memory_kib(pid) for path, pid in pids.items()}
            load_after = os.getloadavg()
            await stack.close(list(adapters.values()))
        finally:
            await sessions.close()
    areas = {}
    for side, collapsed, process in profiles:
        process.wait(timeout=window_s + 30)
        areas[side] = profile_areas(collapsed) if collapsed.exists() else {}
    result: dict[str, Any] = {"loadavg_1m": [round(load_before[0], 2), round(load_after[0], 2)]}
    for side, paths in by_side.items():
        messages = [(tally.count[p] - counts_before.get(p, 0)) / window_s for p in paths]
        lost[side] += sum(p not in cpu for p in paths)
        paths = [p for p in paths if p in cpu]
        result[side] = {
            "cpu_pct_per_adapter": distribution([cpu[p] for p in paths]),
            "system_cpu_pct_per_adapter": distribution([system[p] for p in paths]),
            "pss_mib_per_adapter": distribution([memory[p]["pss_kib"] for p in paths], 1 / 1024),
            "private_mib_per_adapter": distribution(
                [memory[p]["private_kib"] for p in paths], 1 / 1024
            ),
            "pss_mib_at_window_start": distribution(
                [memory_start[p]["pss_kib"] for p in paths], 1 / 1024
            ),
            "private_mib_at_window_start": distribution(
                [memory_start[p]["private_kib"] for p in paths], 1 / 1024
            ),
            "create_to_active_ms": distribution([created[p].create_ms for p in paths]),
            "messages_per_s_per_adapter": distribution(messages),
            "profile_pct": areas.get(side, {}),
            "adapters_lost": lost[side],
        }
    result["adapter_pids"] = list(recorded.values())
    return result


async def run(
    stack: Stack,
    kinds: tuple[str, ...],
    n: int,
    warmup_s: float,
    window_s: float,
    profile: Path | None,
) -> dict[str, Any]:
    results = {}
    for kind in kinds:
        progress(f"levers: {kind}: {2 * n} adapters")
        results[kind] = await measure(stack, kind, n, warmup_s, window_s, profile)
        # The closed adapters' processes gone before the next kind starts.
        await settle(results[kind].pop("adapter_pids"), float("inf"), timeout_s=30.0)
    return results


def show(result: dict[str, Any]) -> None:
    a, b = result["sides"]
    rows = []
    for kind, r in result["kinds"].items():
        for metric, field in (
            ("CPU % mean", "cpu_pct_per_adapter"),
            ("of it in the kernel, % mean", "system_cpu_pct_per_adapter"),
            ("PSS MiB mean", "pss_mib_per_adapter"),
            ("private MiB mean", "private_mib_per_adapter"),
            ("create→active ms median", "create_to_active_ms"),
            ("messages/s median", "messages_per_s_per_adapter"),
        ):
            stat = "median" if "median" in metric else "mean"
            va, vb = r.get(a, {}).get(field, {}).get(stat), r.get(b, {}).get(field, {}).get(stat)
            rows.append([kind, metric, va, vb, ratio(vb, va)])
    print_table(
        f"lever {result['lever']}: {a} (A) against {b} (B), same run",
        ["kind", "metric", a, b, "B/A"],
        rows,
    )
    for kind, r in result["kinds"].items():
        for side in (a, b):
            if r.get(side, {}).get("profile_pct"):
                print(f"{kind} {side} profile %: {r[side]['profile_pct']}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    register_codecs()  # this process makes peer connections of its own
    parser = argparse.ArgumentParser(prog="python -m bench.levers", description=__doc__)
    parser.add_argument("--lever", choices=("event_loop", "python", "commit"), default="event_loop")
    parser.add_argument("--baseline", default="HEAD", help="the commit side A runs (`commit`)")
    parser.add_argument("-n", "--adapters", type=int, default=5, help="adapters per side")
    parser.add_argument(
        "--types", default=",".join(DEFAULT_KINDS), help=f"subset of {','.join(KINDS)}"
    )
    parser.add_argument("--warmup", type=float, default=4.0)
    parser.add_argument("--window", type=float, default=20.0)
    parser.add_argument("--profile", action="store_true", help="py-spy one adapter per side")
    parser.add_argument("--python-venv", type=Path, default=DEFAULT_VENV)
    parser.add_argument(
        "--priority", action="store_true", help="autogroup nice -19 (bench.harness, root)"
    )
    parser.add_argument("--quick", action="store_true", help="1 adapter per side, 2 s")
    parser.add_argument("--results-dir", type=Path, default=None)
    parser.add_argument("--name", default=None, help="result file name (levers-<lever>)")
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.types.split(",") if k)
    if unknown := set(kinds) - set(KINDS):
        parser.error(f"unknown type(s): {', '.join(sorted(unknown))}")
    n, warmup, window = (1, 1.0, 2.0) if args.quick else (args.adapters, args.warmup, args.window)
    out = args.results_dir or RESULTS_DIR
    out.mkdir(parents=True, exist_ok=True)
    hosts = sides(args.lever, args.python_venv, args.baseline)
    # Creates back to back on a busy machine: more time to pick up and connect.
    settings = {"SLUICE_PICKUP_TIMEOUT_S": "5", "SLUICE_CONNECT_TIMEOUT_S": "15"}
    with contextlib.ExitStack() as exit_stack:
        if args.priority:
            exit_stack.enter_context(prioritized_session())
        stack = exit_stack.enter_context(running_stack(n, settings=settings, hosts=hosts))
        kinds_result = asyncio.run(
            run(stack, kinds, n, warmup, window, out if args.profile else None)
        )
    result = {
        "lever": args.lever,
        "sides": list(hosts),
        **({"baseline": resolve_commit(args.baseline)} if args.lever == "commit" else {}),
        "kinds": kinds_result,
        "config": {"adapters_per_side": n, "warmup_s": warmup, "window_s": window},
        "session_nice": SESSION_NICE if args.priority else 0,
        "quick": args.quick,
    }
    path = write_result(args.name or f"levers-{args.lever}", result, args.results_dir)
    show(result)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
