"""What egress's reorder window costs in latency, replayed on the relay's seeded schedule.

`python -m tests.netsim.window_cost [--seconds 60] [--seed 1]` sends 20 ms packets
through `Schedule` (jitter, loss) into `worker.protocol.reorder.AudioReorder` and prints,
per impairment, how long packets waited in the window beyond their own arrival (the
latency it adds) and what became of the holes. Pure computation: no sockets, no clock.
"""

from __future__ import annotations

import argparse
import heapq

import numpy as np

from tests.netsim.schedule import Impairment, Schedule
from worker.protocol.reorder import AudioReorder, Decode, Play

CELT_20MS = bytes([31 << 3, 0])  # what a 20 ms packet's TOC says; the rest is not decoded
CASES = {
    "no impairment": Impairment(),
    "30 ± 20 ms jitter, reordering": Impairment(delay_ms=30, jitter_ms=20),
    "30 ± 20 ms jitter, in order": Impairment(delay_ms=30, jitter_ms=20, reorder=False),
    "5 % loss": Impairment(loss=0.05),
    "5 % loss + 30 ± 20 ms jitter": Impairment(loss=0.05, delay_ms=30, jitter_ms=20),
    "10 % loss": Impairment(loss=0.10),
}


def run(imp: Impairment, seconds: float, seed: int) -> str:
    schedule = Schedule(imp, seed, start=0.0)
    arrivals: list[tuple[float, int]] = []
    for n in range(int(seconds * 50)):
        verdict = schedule.decide(n * 0.02)
        if not verdict.drop:
            heapq.heappush(arrivals, (verdict.release_at, n))
    window = AudioReorder()
    arrived_at: dict[int, float] = {}
    waits: list[float] = []

    def played(items: list[Play], now: float) -> None:
        for item in items:
            if isinstance(item, Decode):
                waits.append(now - arrived_at[(item.timestamp // 960)])

    while arrivals:
        now, n = heapq.heappop(arrivals)
        deadline = window.deadline()
        if deadline is not None and deadline <= now:
            played(window.expire(deadline), deadline)
        arrived_at[n] = now
        played(window.push(n % 65_536, n * 960, CELT_20MS, now), now)
    counts = window.counts
    ms = np.array(waits) * 1000
    return (
        f"waited: median {np.median(ms):.1f} ms, p99 {np.percentile(ms, 99):.1f}, max "
        f"{ms.max():.1f}; {np.mean(ms > 0):.1%} of packets waited; reordered "
        f"{counts.reordered}, late {counts.late}, concealed {counts.concealed}, lost {counts.lost}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for name, imp in CASES.items():
        print(f"{name:32} {run(imp, args.seconds, args.seed)}")


if __name__ == "__main__":
    main()
