"""Chaos steps that kill a host: a worker host, an API replica, an SFU node."""

from __future__ import annotations

import asyncio
import statistics
import subprocess
import time
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from sluice.state import sfu_nodes, track_registry
from tests.chaos.deployment import wait_until
from tests.chaos.fleet import Connection, Stream
from tests.chaos.hosts import living
from tests.chaos.observe import host_of, live_records, ms, no_stall, records
from tests.integration.helpers import BIN

if TYPE_CHECKING:
    from tests.chaos.run import Chaos

_NEVER = Connection(float("inf"))


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s" if values else "-"


async def kill_worker_host(c: Chaos) -> None:
    """SIGKILL of a worker host's supervisor, workers and pipelines, all at once."""
    step, v, d = "worker host", c.verdicts, c.d
    placed = {
        s.name: host_of(r.get("worker", ""), d.workers)
        for s in c.streams
        for r in [records(d.conn, [s.adapter_id]).get(s.adapter_id, {})]
    }
    victim = max(d.workers, key=lambda h: sum(1 for host in placed.values() if host is h))
    lost = [s for s in c.streams if placed[s.name] is victim]
    survivors = [s for s in c.streams if s.egress and placed[s.name] is not victim]
    egress = [s for s in lost if s.egress]
    ingest = [s for s in lost if not s.egress]
    killed_at = time.monotonic()
    count = victim.kill()
    v.note(
        f"killed {victim.name}: {count} processes at once; it ran {len(egress)} egress and "
        f"{len(ingest)} ingest adapters, the other host {len(c.streams) - len(lost)}"
    )
    deadline = killed_at + 15
    seen_lost: dict[str, float] = {}  # when the reapers handed each egress adapter back
    while time.monotonic() < deadline:
        for s in egress:
            if s.name not in seen_lost and _state(c, s)[0] == "reconnecting":
                seen_lost[s.name] = time.monotonic() - killed_at
        resumed = all(_resumed_at(s, killed_at) for s in egress)
        ended = all(_state(c, s) == ("closed", "worker_lost") for s in ingest)
        if resumed and ended:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(2.0)  # a second reconnect, if any, would show now
    waits = [(_resumed_at(s, killed_at) or float("inf")) - killed_at for s in egress]
    if waits:
        dialled = [
            (s.connected_after(killed_at) or [_NEVER])[0].opened_at - killed_at for s in egress
        ]
        within = c.size.resume_within_s
        v.check(
            step,
            f"egress adapters resumed on the other host within {within:.0f} s",
            max(waits) <= within,
            f"first Packet after the kill: median {statistics.median(waits):.2f} s, "
            f"max {max(waits):.2f} s ({len(waits)} adapters); found lost after "
            f"{_median(list(seen_lost.values()))}, endpoint dialled again after "
            f"{_median(dialled)} (medians)",
        )
    reconnects = {s.name: len(s.connected_after(killed_at)) for s in egress}
    v.check(
        step,
        "each of their endpoints saw one reconnect",
        all(n == 1 for n in reconnects.values()),
        str(reconnects),
    )
    where = {
        s.name: getattr(host_of(r.get("worker", ""), d.workers), "name", "-")
        for s in egress
        for r in [records(d.conn, [s.adapter_id]).get(s.adapter_id, {})]
    }
    v.check(
        step,
        "they run on the other host",
        all(name not in ("-", victim.name) for name in where.values()),
        str(where),
    )
    repeats = {s.name: s.repeats() for s in c.streams if s.egress and s.repeats()}
    v.check(step, "no sequence number repeats, on any stream", not repeats, str(repeats or "none"))
    ends = {s.name: _state(c, s) for s in ingest}
    v.check(
        step,
        "ingest adapters closed worker_lost",
        all(e == ("closed", "worker_lost") for e in ends.values()),
        str(ends),
    )
    untouched = {s.name: len(s.connected_after(killed_at)) for s in survivors}
    v.check(
        step,
        "the other host's egress adapters never reconnected",
        not any(untouched.values()),
        f"{len(survivors)} adapters, reconnects {sum(untouched.values())}",
    )
    stale = _stale_records(c)
    v.check(step, "no record active or connecting on a dead process", not stale, str(stale))
    listed = await asyncio.to_thread(
        subprocess.run,
        [str(BIN / "sluice"), "workers", "--json"],
        env=d.env,
        capture_output=True,
        timeout=60,
    )
    v.check(
        step,
        "`sluice workers` still lists the workers",
        listed.returncode == 0,
        "".join(listed.stderr.decode(errors="replace").strip().splitlines()[-1:])
        or "exit status 0",
    )
    leftovers = living(victim.killed)
    v.check(step, "nothing of the host runs on", not leftovers, f"{len(leftovers)} processes")
    took = d.restart_worker_host(victim)
    v.note(f"{victim.name} started again; its pool registered in {took:.1f} s")


def _resumed_at(stream: Stream, since: float) -> float | None:
    """When the first Packet of a connection opened after `since` arrived."""
    for conn in stream.connected_after(since):
        if conn.packets:
            return conn.packets[0][2]
    return None


def _state(c: Chaos, stream: Stream) -> tuple[str, str]:
    record = records(c.d.conn, [stream.adapter_id]).get(stream.adapter_id, {})
    return record.get("state", "gone"), record.get("close_reason", "")


def _stale_records(c: Chaos) -> dict[str, str]:
    """Live records whose worker process is no longer running (or which have none)."""
    stale = {}
    for adapter_id, record in live_records(c.d.conn).items():
        worker = record.get("worker", "")
        if record["state"] == "reconnecting" and not worker:
            continue  # handed back, waiting for a claim: the reaper owns it
        if host_of(worker, c.d.workers) is None:
            stale[adapter_id] = f"{record['state']} on {worker or 'no worker'}"
    return stale


async def kill_sfu_node(c: Chaos) -> None:
    """SIGKILL of one SFU node, under load; then it is started again."""
    step, v, d = "sfu node", c.verdicts, c.d
    victim = d.sfu[-1]
    doomed = [p for p in c.publishers if p.node_url == victim.url]
    nodes = await _nodes_of(c, c.streams)
    lost = [s for s in c.streams if nodes.get(s.name) == victim.url]
    kept = [s for s in c.streams if s.kind == "pcm" and nodes.get(s.name) not in (None, victim.url)]
    killed_at = time.monotonic()
    count = victim.kill()
    v.note(
        f"killed {victim.name} ({count} process): {len(doomed)} publisher and "
        f"{len(lost)} adapters' sessions on it, {len(kept)} egress PCM adapters on the other node"
    )
    gone_after = float("inf")
    async with c.api(timeout_s=5) as api:
        while time.monotonic() - killed_at < 10 and doomed:
            got = await api.get(f"/sessions/{doomed[0].session_id}")
            if got.status_code == 404:
                gone_after = time.monotonic() - killed_at
                break
            await asyncio.sleep(0.1)
    v.check(step, "its sessions answer 404 within 5 s", gone_after <= 5.0, f"{gone_after:.1f} s")
    ends: dict[str, tuple[str, str]] = {}
    while time.monotonic() - killed_at < 15:
        ends = {s.name: _state(c, s) for s in lost}
        if all(state == "closed" for state, _ in ends.values()):
            break
        await asyncio.sleep(0.2)
    ended_after = time.monotonic() - killed_at
    v.check(
        step,
        "adapters whose media went through it closed with a reason",
        all(state == "closed" and reason for state, reason in ends.values()),
        f"after {ended_after:.1f} s: {_tally(ends)}",
    )
    await asyncio.sleep(max(0.0, killed_at + 5 - time.monotonic()))
    worst, baseline = c.watch.gaps([s.arrivals() for s in kept], killed_at - 1, killed_at + 5)
    v.check(
        step,
        "the other node's egress PCM never stalled over 250 ms",
        no_stall(worst, baseline),
        f"longest gap {ms(worst)} over {len(kept)} streams from 1 s before the kill to 5 s "
        f"after; {ms(baseline)} in the 6 s before that (the runner's own stalls left out)",
    )
    for publisher in doomed:
        c.publishers.remove(publisher)
        await publisher.close()
    victim.start()
    took = d.wait_healthy(victim, 60)
    joined = wait_until(lambda: d.sfu_node_count() == len(d.sfu), 20, "the node to rejoin")
    await c.publish()  # a new publisher on the restarted node
    fresh = await c.fill()
    on_it = [s for s in fresh if (await _nodes_of(c, [s])).get(s.name) == victim.url]
    flowing = [s for s in on_it if not s.egress or time.monotonic() - s.last_packet_at() < 1]
    v.check(
        step,
        "restarted, it rejoins and carries new sessions",
        bool(on_it) and len(flowing) == len(on_it),
        f"healthy after {took:.1f} s, in the directory {joined:.1f} s later; "
        f"{len(on_it)} of {len(fresh)} new adapters' sessions on it, flowing",
    )


async def _nodes_of(c: Chaos, streams: list[Stream]) -> dict[str, str]:
    """The URL of the SFU node holding each stream's session (its source's, for egress)."""
    found: dict[str, str] = {}
    async with Redis.from_url(c.d.redis_url, decode_responses=True) as redis:
        for stream in streams:
            record = records(c.d.conn, [stream.adapter_id]).get(stream.adapter_id, {})
            session = stream.source or record.get("session_id", "")
            where = await track_registry.session_node(redis, session) if session else None
            node = await sfu_nodes.get(redis, where[1]) if where and where[1] else None
            if node is not None:
                found[stream.name] = node.url.rstrip("/")
    return found


def _tally(ends: dict[str, tuple[str, str]]) -> str:
    counts: dict[str, int] = {}
    for state, reason in ends.values():
        key = f"{state} {reason}".strip()
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{n} {key}" for key, n in sorted(counts.items())) or "none"
