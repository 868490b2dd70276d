"""The soak's plan (what runs, for how long) and the bounds its checks hold it to."""

from __future__ import annotations

import random
from dataclasses import dataclass

# --- bounds (docs/reliability.md, "Soak", gives the measured figures) -----------------
# Growth of a long-lived process's RSS from the end of the warm-up (the first 20 % of
# the run: pools, caches and allocator arenas fill) to the end of the run. RSS, not PSS:
# PSS of forked processes rises whenever a sibling sharing their pages exits, which churn
# does all the time. Adapter processes and pool workers hold one stream or none and were
# flat in the 30-minute form (-0.3 to +0.4 MiB): 2 MiB, which a leak of one 3.8 kB Packet
# every 2.5 s exceeds in its 24 minutes after the warm-up. The services carry the churn:
# the SFU, which every ingest create and close goes through, grew 7.1 MiB, settling
# (+6.3 MiB in the first 12 of those minutes, +0.8 in the last 12): 10 MiB for them.
ADAPTER_GROWTH_BOUND_KIB = 2 * 1024  # egress adapter processes, pool workers
SERVICE_GROWTH_BOUND_KIB = 10 * 1024  # API, SFU, Redis, supervisor, health server
WARMUP_FRACTION = 0.2
FD_MARGIN = 4  # fds a process may hold at rest beyond its count after the warm-up
# Packets counted sent but never seen, per drop: what loopback buffers hold when a
# connection is cut; one second of audio, far above what we measure (none so far).
LOST_PER_DROP_MAX = 50
INGEST_ABORT_LOSS_MAX = 1 << 20  # bytes in flight when an ingest endpoint aborts

CHUNK = 16_384  # ingest payload per Packet, as endpoints written for Cloudflare send
CHUNK_S = CHUNK / (48_000 * 4)  # its duration in s16le stereo at 48 kHz
DROP_MODES = ("abort", "1001", "restart")
INGEST_ENDS = ("api", "1001", "abort")
RECONNECT_WAIT_S = 10.0  # a re-dial after an outage arrives well within this
QUEUE = "sluice-adapters"


@dataclass(frozen=True)
class Plan:
    """What to run; every random choice derives from `seed`."""

    seconds: float
    egress: int
    ingest: int
    seed: int
    sample_every_s: float = 10.0
    chaos_gap_s: tuple[float, float] = (6.0, 20.0)  # between two drops of one endpoint
    max_outage_s: float = 3.5  # < SLUICE_RECONNECT_WINDOW_S (5 s), with room for a dial
    backlog_s: float = 2.0  # < max_outage_s: long outages drop the oldest Packets
    ingest_life_s: tuple[float, float] = (8.0, 40.0)
    rest_wait_s: float = 45.0  # for the SFU to drop sessions whose peers left

    @property
    def workers(self) -> int:
        return self.egress + self.ingest + 1  # one spare: churn never waits for an exit

    def rng(self, actor: str) -> random.Random:
        """A generator per actor, so timing cannot reorder anyone's draws."""
        return random.Random(f"{self.seed}:{actor}")
