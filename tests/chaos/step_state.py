"""Chaos step on shared state: Redis restarted empty under load."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from tests.chaos import fleet
from tests.chaos.fleet import Stream, by_kind
from tests.chaos.observe import ms, no_stall, records

if TYPE_CHECKING:
    from tests.chaos.run import Chaos


async def restart_redis_empty(c: Chaos) -> None:
    """SIGKILL of Redis, started again at once with nothing in it (no persistence)."""
    step, v, d = "redis", c.verdicts, c.d
    watch_s = 20.0 if c.size.adapters >= 20 else 12.0
    ids = {s.adapter_id: s for s in c.streams}
    killed_at = time.monotonic()
    d.redis.kill()
    d.start_redis()
    back_at = time.monotonic()
    v.note(f"Redis killed and started again, empty, answering after {back_at - killed_at:.2f} s")
    restored: dict[str, float] = {
        "SFU directory": float("inf"),
        "every adapter record": float("inf"),
        "every worker process registered": float("inf"),
        "publishers' sessions routable": float("inf"),
        "a new egress create": float("inf"),
    }
    probe = Stream("redis-probe", "pcm", c.publishers[0].session_id)
    async with c.api(timeout_s=5) as api:
        while time.monotonic() - killed_at < watch_s:
            now = time.monotonic() - killed_at

            def seen(what: str, ok: bool, now: float = now) -> None:
                if ok and restored[what] == float("inf"):
                    restored[what] = now

            seen("SFU directory", d.sfu_node_count() == len(d.sfu))
            found = records(d.conn, ids)
            seen("every adapter record", all(r.get("state") == "active" for r in found.values())
                 and len(found) == len(ids))  # fmt: skip
            seen(
                "every worker process registered",
                d.workers_registered() >= len(d.workers) * d.shape.processes,
            )
            if restored["publishers' sessions routable"] == float("inf"):
                answers = [await api.get(f"/sessions/{p.session_id}") for p in c.publishers]
                seen("publishers' sessions routable", all(a.status_code == 200 for a in answers))
            if restored["a new egress create"] == float("inf"):
                await fleet.create(api, c.endpoints, probe)
                seen("a new egress create", bool(probe.adapter_id))
            await asyncio.sleep(0.25)
    for what, after in restored.items():
        v.note(f"{what}: back after {after:.1f} s" if after < watch_s else f"{what}: NOT back")
    closed = {
        s.name: f"{r.get('state')} {r.get('close_reason', '')}".strip()
        for s in c.streams
        for r in [records(d.conn, [s.adapter_id]).get(s.adapter_id, {})]
        if r.get("state") != "active"
    }
    v.check(step, "every adapter still active", not closed, str(closed or "all"))
    reconnects = {
        s.name: len(s.connected_after(killed_at)) for s in c.streams if s.connected_after(killed_at)
    }
    v.check(step, "no endpoint saw a reconnect", not reconnects, str(reconnects or "none"))
    pcm, jpeg = by_kind(c.streams, "pcm"), by_kind(c.streams, "jpeg")
    until = killed_at + watch_s
    worst, baseline = c.watch.gaps([s.arrivals() for s in pcm], killed_at - 1, until)
    v.check(
        step,
        "egress PCM never waited on Redis",
        no_stall(worst, baseline),
        f"longest gap {ms(worst)} over {len(pcm)} streams from 1 s before the kill; "
        f"{ms(baseline)} in as long before that",
    )
    pictures = [len(s.arrivals(killed_at, until)) for s in jpeg]
    v.check(
        step,
        "JPEG pictures kept coming (about 1 a second)",
        all(n >= watch_s / 2 for n in pictures),
        f"{pictures} pictures per stream in the {watch_s:.0f} s after the kill"
        if pictures
        else "no JPEG adapter in the fleet",
    )
    for what in ("SFU directory", "every adapter record", "every worker process registered"):
        v.check(step, f"{what} restored", restored[what] < watch_s, f"{restored[what]:.1f} s")
    if probe.adapter_id:
        async with c.api() as api:
            await api.post(
                "/adapters/websocket/close", json={"tracks": [{"adapterId": probe.adapter_id}]}
            )
