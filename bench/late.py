"""Late frames at the endpoint, per adapter, counted inside a measuring window.

Audio: a Packet is late when it arrives more than `LATE_S` after its expected arrival =
the adapter's first Packet's arrival + timestamp / 48 kHz (network and start-up delay
cancel out); a frame that never arrives in the window counts as late too. JPEG: a picture
is late when it comes more than `JPEG_INTERVAL_S` + `LATE_S` after the previous one; a
missing one (nothing for that long at the end of the window) counts as late.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

from bench.media import FRAME_S, RATE
from sluice.wire.packet import decode

LATE_S = 0.1
JPEG_INTERVAL_S = 1.0


@dataclass
class LateTally:
    """Arrivals per adapter at the endpoint; late frames counted inside a window."""

    kind: str
    measuring: bool = False
    base: dict[str, float] = field(default_factory=dict)  # audio: arrival - ts / 48 kHz
    last_at: dict[str, float] = field(default_factory=dict)
    received: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    late: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    worst_s: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))

    def on_message(self, path: str, message: bytes, now: float) -> None:
        if self.kind == "audio":
            self._audio(path, decode(message).timestamp, now)
        else:
            self._jpeg(path, now)
        self.last_at[path] = now

    def _audio(self, path: str, timestamp: int, now: float) -> None:
        expected = self.base.setdefault(path, now - timestamp / RATE) + timestamp / RATE
        if not self.measuring:
            return
        self.received[path] += 1
        behind = now - expected
        self.worst_s[path] = max(self.worst_s[path], behind)
        if behind > LATE_S:
            self.late[path] += 1

    def _jpeg(self, path: str, now: float) -> None:
        if not self.measuring or path not in self.last_at:
            return
        self.received[path] += 1
        gap = now - self.last_at[path]
        self.worst_s[path] = max(self.worst_s[path], gap - JPEG_INTERVAL_S)
        if gap > JPEG_INTERVAL_S + LATE_S:
            self.late[path] += 1

    def start(self) -> None:
        self.received.clear()
        self.late.clear()
        self.worst_s.clear()
        self.measuring = True

    def stop(self, paths: list[str], window_s: float) -> dict[str, Any]:
        """Late frames over the window, missing ones included, summed over `paths`."""
        self.measuring = False
        now = time.monotonic()
        late = expected = 0
        for path in paths:
            if self.kind == "audio":
                due = round(window_s / FRAME_S)
                late += self.late[path] + max(0, due - self.received[path])
            else:
                due = round(window_s / JPEG_INTERVAL_S)
                silent = now - self.last_at.get(path, 0.0) > JPEG_INTERVAL_S + LATE_S
                late += self.late[path] + int(silent)
            expected += due
        worst = max((self.worst_s[p] for p in paths), default=0.0)
        return {
            "frames_expected": expected,
            "frames_received": sum(self.received[p] for p in paths),
            "frames_late": late,
            "late_pct": round(100.0 * late / expected, 3) if expected else None,
            "worst_late_ms": round(worst * 1000, 1),
        }
