"""Measuring a chaos step: what the runner's own loop did, what Redis holds, the verdicts."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import redis

from tests.chaos.hosts import Host

LIVE_STATES = ("connecting", "active", "reconnecting")


class LoopWatch:
    """Records every stretch in which this process's event loop ran 50 ms or more late.

    A Packet cannot be seen arriving while the loop is stalled, whoever sent it: gaps
    that overlap such a stretch say nothing about Sluice (the runner shares 2 cores).
    """

    def __init__(self, tick_s: float = 0.01) -> None:
        self.stalls: list[tuple[float, float]] = []
        self._tick_s = tick_s
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._watch(), name="loop-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _watch(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self._tick_s)
            after = time.monotonic()
            if after - before - self._tick_s >= 0.05:
                self.stalls.append((before, after))

    def longest_gap(self, times: list[float]) -> float:
        """The longest wait between two arrivals that no stall of this loop explains."""
        gaps = [
            b - a
            for a, b in itertools.pairwise(times)
            if not any(start < b and a < end for start, end in self.stalls)
        ]
        return max(gaps, default=0.0)

    def gaps(self, arrivals: list[list[float]], since: float, until: float) -> tuple[float, float]:
        """The longest gap over all streams from `since` to `until`, and the same measure
        over as long a stretch just before `since` (what this machine's load alone does)."""
        before = since - (until - since)

        def worst(start: float, end: float) -> float:
            return max(
                (self.longest_gap([t for t in times if start <= t < end]) for times in arrivals),
                default=0.0,
            )

        return worst(since, until), worst(before, since)

    def stalled_between(self, since: float, until: float) -> float:
        return sum(min(e, until) - max(b, since) for b, e in self.stalls if b < until and since < e)


@dataclass
class Check:
    step: str
    what: str
    ok: bool
    measured: str


@dataclass
class Verdicts:
    """Every check of the run, printed as it is made."""

    checks: list[Check] = field(default_factory=list)

    def check(self, step: str, what: str, ok: bool, measured: str = "") -> bool:
        self.checks.append(Check(step, what, ok, measured))
        print(f"  [{'ok' if ok else 'FAIL'}] {what}" + (f": {measured}" if measured else ""))
        return ok

    def note(self, text: str) -> None:
        print(f"  {text}")

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def summary(self) -> str:
        lines = [f"{len(self.checks) - len(self.failed)} of {len(self.checks)} checks passed"]
        lines += [f"  FAILED {c.step}: {c.what}: {c.measured}" for c in self.failed]
        return "\n".join(lines)


def records(conn: redis.Redis, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Adapter records by id (absent ids are left out)."""
    ids = list(ids)
    with conn.pipeline(transaction=False) as pipe:
        for adapter_id in ids:
            pipe.hgetall(f"sluice:adapter:{adapter_id}")
        found = pipe.execute()
    return {i: r for i, r in zip(ids, found, strict=True) if r}


def live_records(conn: redis.Redis) -> dict[str, dict[str, Any]]:
    """Every adapter record in a live state, found by scanning (nothing trusted but data)."""
    ids = [k.rsplit(":", 1)[1] for k in conn.scan_iter("sluice:adapter:*", count=1000)]
    ids = [i for i in ids if len(i) == 32]  # leave out `:events`, `:control` and the like
    return {i: r for i, r in records(conn, ids).items() if r.get("state") in LIVE_STATES}


def host_of(worker: str, hosts: Iterable[Host]) -> Host | None:
    """The host whose process `worker` (a record's `hostname:pid`) is."""
    if ":" not in worker:
        return None
    pid = int(worker.rsplit(":", 1)[1])
    return next((h for h in hosts if pid in h.processes()), None)


def percentiles(values: list[float], *qs: float) -> list[float]:
    return [float(np.percentile(values, q)) for q in qs] if values else [float("nan")] * len(qs)


# Loose on purpose: the deployment shares 2 cores with the runner and whatever else runs,
# and a pipeline process descheduled for 150 ms is the machine, not the fault. A fault
# that stalls media stalls it for its own duration (a heartbeat, a reconnect: 1 s or more).
STALL_LIMIT_S = 0.25


def no_stall(worst: float, baseline: float) -> bool:
    """Media never stalled over `STALL_LIMIT_S`, or no longer than it did before the fault
    (on a machine this loaded, the fault cannot be blamed for what happens without it)."""
    return worst <= max(STALL_LIMIT_S, 1.5 * baseline)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"
