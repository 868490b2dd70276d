"""Waiting for a benchmark's previous load to be gone before the next one measures.

Closing adapters returns before their processes have exited, and the load average they
raised takes a minute or more to fall: a ramp that starts at once measures its first
steps on a machine still busy with the last one's teardown.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

from bench.harness import progress


def alive(pids: list[int]) -> list[int]:
    """The processes of `pids` that still exist and are not zombies."""
    running = []
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if stat[stat.rindex(")") + 2] != "Z":
            running.append(pid)
    return running


async def settle(
    pids: list[int], load_below: float, timeout_s: float = 120.0, poll_s: float = 2.0
) -> dict[str, Any]:
    """Waits until every process of `pids` is gone and the 1-minute load average is below
    `load_below` (or stops falling: other work on the machine may hold it up), at most
    `timeout_s`. Returns what it waited for, to be reported beside the figures."""
    started = time.monotonic()
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        if not alive(pids):
            break
        await asyncio.sleep(poll_s / 4)
    processes_s = time.monotonic() - started
    lowest = os.getloadavg()[0]
    flat_since = time.monotonic()
    while (load := os.getloadavg()[0]) >= load_below and time.monotonic() < deadline:
        if load < lowest - 0.05:
            lowest, flat_since = load, time.monotonic()
        elif time.monotonic() - flat_since > 20.0:
            break  # not falling any more: the rest is someone else's
        await asyncio.sleep(poll_s)
    result = {
        "processes_left": len(alive(pids)),
        "processes_gone_s": round(processes_s, 1),
        "waited_s": round(time.monotonic() - started, 1),
        "loadavg_1m": round(load, 2),
    }
    progress(f"settled: {result}")
    return result
