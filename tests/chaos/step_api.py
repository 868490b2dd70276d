"""Chaos steps on the control plane: an API replica dies mid-burst, a load test."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
from rq import Queue
from rq.registry import StartedJobRegistry

from sluice.cli.admin_fleet import list_workers
from tests.chaos import fleet
from tests.chaos.deployment import QUEUE
from tests.chaos.fleet import Stream
from tests.chaos.observe import live_records, ms, percentiles

if TYPE_CHECKING:
    from tests.chaos.run import Chaos

# A create the replica never answered is closed once its answer window (pickup 1 s +
# connect 1.5 s + 1 s) and the reapers' grace (pickup + 5 s) are past, by a reaper pass
# (every second or so); one more pass for good measure.
SWEEP_S = 3.5 + 6.0 + 2.5


@dataclass
class Answer:
    status: int
    error: str  # the item's errorCode, the body's, or the proxy's word
    seconds: float


async def _post(api: httpx.AsyncClient, endpoints: fleet.Endpoints, stream: Stream) -> Answer:
    started = time.monotonic()
    try:
        await fleet.create(api, endpoints, stream)
    except httpx.HTTPError as exc:
        return Answer(0, type(exc).__name__, time.monotonic() - started)
    took = time.monotonic() - started
    return Answer(stream.create_status, stream.create_error, took)


async def _answer(api: httpx.AsyncClient, item: dict[str, Any]) -> Answer:
    started = time.monotonic()
    try:
        resp = await api.post("/adapters/websocket/new", json={"tracks": [item]})
    except httpx.HTTPError as exc:
        return Answer(0, type(exc).__name__, time.monotonic() - started)
    took = time.monotonic() - started
    try:
        body = resp.json()
    except ValueError:
        body = {}
    track = (body.get("tracks") or [{}])[0] if isinstance(body, dict) else {}
    error = track.get("errorCode") or body.get("errorCode") or body.get("error", "")
    return Answer(resp.status_code, str(error), took)


def _by_endpoint(c: Chaos, prefix: str) -> dict[str, dict[str, Any]]:
    """Every adapter record whose endpoint path starts with `prefix`, by that path."""
    found: dict[str, dict[str, Any]] = {}
    for key in c.d.conn.scan_iter("sluice:adapter:*", count=1000):
        if str(key).count(":") != 2:
            continue
        record: dict[str, Any] = c.d.conn.hgetall(key)  # type: ignore[assignment]
        path = str(record.get("endpoint", "")).rsplit("/", 1)[-1]
        if path.startswith(prefix):
            found[path] = record
    return found


async def kill_api_replica(c: Chaos) -> None:
    """SIGKILL of an API replica while creates are in flight on it."""
    step, v, d = "api replica", c.verdicts, c.d
    victim = d.api[0]
    sources = [p.session_id for p in c.publishers]
    burst = [Stream(f"burst-{i}", "pcm", sources[i % len(sources)]) for i in range(c.size.burst)]
    spread_s = 1.0
    async with c.api() as api:

        async def later(i: int, stream: Stream) -> Answer:
            await asyncio.sleep(i * spread_s / len(burst))
            return await _post(api, c.endpoints, stream)

        tasks = [asyncio.create_task(later(i, s)) for i, s in enumerate(burst)]
        await asyncio.sleep(spread_s * 0.4)
        victim.kill()
        answers = await asyncio.gather(*tasks)
    outcome = Counter(f"{a.status} {a.error}".strip() for a in answers)
    v.note(
        f"killed {victim.name} {spread_s * 0.4:.1f} s into a burst of {len(burst)} creates "
        f"over {spread_s:.0f} s; answers: {dict(outcome)}"
    )
    await asyncio.sleep(SWEEP_S)
    found = _by_endpoint(c, "burst-")
    returned = {s.name for s in burst if s.adapter_id}
    orphans = {
        name: record.get("state", "")
        for name, record in found.items()
        if name not in returned and record.get("state") != "closed"
    }
    still_open = [s.name for s in burst if s.name not in returned and _open(s)]
    unknown = {
        name: f"{record.get('state')} {record.get('close_reason', '')}".strip()
        for name, record in found.items()
        if name not in returned
    }
    v.check(
        step,
        "every create returned, or the sweeper resolved it",
        not orphans,
        f"{len(returned)} returned an adapter; of the others, records left: {unknown or 'none'}",
    )
    connected = [s.name for s in burst if s.name not in returned and s.connections]
    v.check(
        step,
        "endpoints dialled by creates that never returned were hung up on",
        not still_open,
        f"dialled: {connected or 'none'}; still connected: {still_open or 'none'}",
    )
    busy, live = _busy_workers(c), live_records(d.conn)
    claimed = {i for i, r in live.items() if r.get("worker")}
    v.check(
        step,
        "no orphan job keeps a worker busy",
        busy <= claimed,
        f"{len(busy)} jobs running, {len(claimed)} live adapters claimed; "
        f"running without a live adapter: {sorted(busy - claimed) or 'none'}",
    )
    ids = [{"adapterId": s.adapter_id} for s in burst if s.adapter_id]
    async with c.api() as api:
        if ids:
            await api.post("/adapters/websocket/close", json={"tracks": ids})
    victim.start()
    took = d.wait_healthy(victim, 60)
    v.note(f"{victim.name} started again, healthy after {took:.1f} s")


def _open(stream: Stream) -> bool:
    return any(conn.closed_at is None for conn in stream.connections)


def _busy_workers(c: Chaos) -> set[str]:
    """The adapters the living RQ workers are running now, as `sluice workers` sees them."""
    alive = set().union(*(h.processes() for h in c.d.workers))
    report = list_workers(c.d.rq_conn, QUEUE)
    return {w.adapter_id for w in report.workers if w.pid in alive and w.adapter_id}


async def load_test(c: Chaos) -> None:
    """Many creates through the proxy, more than the pool can take, then leak checks."""
    step, v, d = "load", c.verdicts, c.d
    count, seconds = c.size.load_creates, c.size.load_seconds
    c.endpoints.hold_s["load-"] = 1.0  # each endpoint ends its adapter after a second
    sources = [p.session_id for p in c.publishers]
    before = set(live_records(d.conn))
    async with c.api(timeout_s=60) as api:

        async def later(i: int) -> Answer:
            await asyncio.sleep(i * seconds / count)
            item = fleet.egress_item(
                c.endpoints.url(f"load-{i}"), Stream(f"load-{i}", "pcm", sources[i % 2])
            )
            return await _answer(api, item)

        started = time.monotonic()
        answers = await asyncio.gather(*(later(i) for i in range(count)))
        took = time.monotonic() - started
        stats = (await api.get(f"{d.base_url}/_proxy/stats")).json()
    outcome = Counter(f"{a.status} {a.error}".strip() for a in answers)
    allowed = {"200", "503 no_capacity", "429 rate_limited", "429 too_many_adapters"}
    # The endpoints are this process's, on a loop as loaded as the rest: a dial it did not
    # answer in time is the endpoint's failure, which the API names as such.
    allowed.add("503 websocket_connection_timeout")
    v.check(
        step,
        "every answer 200, 503 no_capacity or 429",
        set(outcome) <= allowed,
        f"{dict(outcome)} for {count} creates sent over {seconds:.0f} s, the last answered "
        f"after {took:.1f} s",
    )
    p50, p99 = percentiles([a.seconds for a in answers], 50, 99)
    ok50, ok99 = percentiles([a.seconds for a in answers if a.status == 200], 50, 99)
    v.note(
        f"API answer time p50 {ms(p50)}, p99 {ms(p99)} (creates that made an adapter: "
        f"p50 {ms(ok50)}, p99 {ms(ok99)}); proxy: {stats['answered']}"
    )
    v.check(
        step,
        "both replicas answered",
        len(stats["answered"]) == len(d.api),
        str(stats["answered"]),
    )
    settled = await _until_settled(c, before, 20)
    v.check(step, "every load adapter and its job ended", settled < 20, f"after {settled:.1f} s")
    await _leak_checks(c, step, before)


async def _until_settled(c: Chaos, before: set[str], within_s: float) -> float:
    """Waits until no record beyond `before` is live and no job runs without a live
    record (a pipeline tears down after its record closed); returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < within_s:
        live = set(live_records(c.d.conn))
        if live <= before and _busy_workers(c) <= live:
            break
        await asyncio.sleep(0.25)
    return time.monotonic() - started


async def _leak_checks(c: Chaos, step: str, before: set[str]) -> None:
    v, d = c.verdicts, c.d
    live = set(live_records(d.conn))
    v.check(
        step, "no leaked records", live <= before, f"{len(live - before)} live beyond the fleet"
    )
    queue = Queue(QUEUE, connection=d.conn)
    busy = _busy_workers(c)
    stale = set(StartedJobRegistry(queue=queue).get_job_ids()) - busy
    v.check(
        step,
        "no leaked jobs",
        queue.count == 0 and busy <= live,
        f"{queue.count} queued; {len(busy)} running, {len(busy - live)} of them without a "
        f"live adapter ({len(stale)} more in RQ's started registry from killed workers, "
        "which RQ's own cleanup moves to its failed registry)",
    )
    zsets = {k: d.conn.zcard(f"sluice:{k}") for k in ("pending", "resuming", "heartbeats")}
    v.check(
        step,
        "nothing pending, resuming, or beating beyond the fleet",
        zsets["pending"] == zsets["resuming"] == 0 and zsets["heartbeats"] <= len(live),
        str(zsets),
    )
    started = time.monotonic()  # a pipeline whose record just closed may still be exiting
    for _ in range(40):  # /proc has no event to await
        # supervisor, health, pool, and each idle pool process's standby (worker.standby)
        busy = _pipelines(c)
        expected = {h.name: 2 + 2 * d.shape.processes - busy[h.name] for h in d.workers}
        if (counts := _process_counts(c)) == expected:
            break
        await asyncio.sleep(0.25)
    v.check(
        step,
        "no leaked processes",
        counts == expected,
        f"per host, beside its live pipelines: {counts} (expected {expected}) after "
        f"{time.monotonic() - started:.1f} s",
    )


def _pipelines(c: Chaos) -> Counter[str]:
    """How many live adapters' pipelines each worker host runs."""
    live = live_records(c.d.conn).values()
    return Counter(
        h.name for h in c.d.workers for r in live
        if int(r.get("worker", "x:0").rsplit(":", 1)[1]) in h.processes()
    )  # fmt: skip


def _process_counts(c: Chaos) -> dict[str, int]:
    """Each worker host's processes, its live adapters' pipelines left out."""
    pipelines = _pipelines(c)
    return {h.name: len(h.processes()) - pipelines[h.name] for h in c.d.workers}
