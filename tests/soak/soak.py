"""A soak: egress and ingest adapters under endpoint chaos for a long while, watched for leaks.

    python -m tests.soak.soak --minutes 30 --egress 6 --ingest 4     # `make soak`

On a throwaway redis-server and a real stack (SFU, API, a pool of egress + ingest + 1
worker processes) it publishes one tone track and, until the time is up, runs:

- egress: pcm adapters for the whole run, each to its own WebSocket endpoint that now and
  then drops the connection (abort, a 1001, or its whole server going away) and stays
  away for up to `max_outage_s`, always less than the reconnect window, so the adapter
  must ride it out; the backlog (`backlog_s`) is shorter than the longest outages, so some
  Packets are dropped, and counted;
- ingest: slots whose endpoint pushes paced 16 KiB PCM Packets; after a while each
  adapter is ended (closed through the API, or by its endpoint with 1001 or an abort) and
  the slot creates the next one: create/close churn.

Every `sample_every_s` it reads RSS, PSS and fds of every process of the stack from /proc,
the worker supervisor's process tree, and Redis's keys. At the end it closes everything
through the API, stops the stack and checks what `run_checks` lists (bounds and
identities, each with why it holds). `tests/soak/test_soak.py` runs the same for 60 s in
`make test`; standalone, the report also goes to `bench/results/soak-<timestamp>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any

import redis.asyncio

from tests.integration.audio import StereoToneTrack
from tests.integration.helpers import Stack, egress_item, ingest_item
from tests.soak.checks import Check, cluster_counters, redis_figures, render, run_checks
from tests.soak.endpoints import EgressEndpoint, Generation, IngestEndpoints
from tests.soak.plan import DROP_MODES, INGEST_ENDS, QUEUE, RECONNECT_WAIT_S, WARMUP_FRACTION, Plan
from tests.soak.procfs import alive, figures, poll_until, proc_stat, process_tree

# --- the run --------------------------------------------------------------------------


class Soak:
    """Runs the plan against a started stack; the caller stops the stack afterwards."""

    def __init__(self, stack: Stack, plan: Plan) -> None:
        self.stack, self.plan = stack, plan
        self.redis = redis.asyncio.Redis.from_url(stack.redis_url, decode_responses=True)
        self.api = stack.client()
        self.egress = [EgressEndpoint(i) for i in range(plan.egress)]
        self.egress_ids: list[str] = []
        self.ingest = IngestEndpoints()
        self.generations: list[Generation] = []
        self.create_retries: list[str] = []
        self.samples: list[dict[str, Any]] = []
        self.seen: dict[int, tuple[str, int]] = {}  # pid → (label, start): checked after stop
        self.ending = asyncio.Event()
        self.sfu_reclaim_s = 0.0
        self.started = time.monotonic()

    def log(self, message: str) -> None:
        print(f"[soak {time.monotonic() - self.started:6.1f} s] {message}", file=sys.stderr)

    async def run(self) -> dict[str, Any]:
        plan = self.plan
        self.log(f"seed {plan.seed}: {plan.egress} egress + {plan.ingest} ingest adapters, "
                 f"{plan.workers} worker processes, {plan.seconds:.0f} s")  # fmt: skip
        await self.sample("baseline")
        sessions = self.stack.sessions()
        session_id, _ = await sessions.publish(StereoToneTrack(440, 660), "mic")
        await self.ingest.listen()
        for ep in self.egress:
            await ep.listen()
        items = [egress_item(ep.url, session_id) for ep in self.egress]
        for first in range(0, len(items), 4):  # at most 4 items per create
            resp = await self.api.post(
                "/adapters/websocket/new", json={"tracks": items[first : first + 4]}
            )
            assert resp.status_code == 200, resp.text
            self.egress_ids += [t["adapterId"] for t in resp.json()["tracks"]]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + plan.seconds
        actors = [asyncio.create_task(self._chaos(ep, deadline)) for ep in self.egress]
        actors += [asyncio.create_task(self._slot(i)) for i in range(plan.ingest)]
        warm_at = loop.time() + plan.seconds * WARMUP_FRACTION
        while loop.time() + plan.sample_every_s < deadline:
            await asyncio.sleep(plan.sample_every_s)
            warm = loop.time() >= warm_at and not any(s["label"] == "warm" for s in self.samples)
            await self.sample("warm" if warm else "run")
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        await self.sample("last")
        self.log("time is up: closing everything through the API")
        self.ending.set()
        await asyncio.gather(*actors)
        body = {"tracks": [{"adapterId": a} for a in self.egress_ids]}
        closed = await self.api.post("/adapters/websocket/close", json=body)
        assert closed.status_code == 200, closed.text
        await self._wait_gone([self._pid_of(f"egress{i}") for i in range(plan.egress)])
        await sessions.close()
        for ep in self.egress:
            assert ep.server is not None
            ep.server.close()
        assert self.ingest.server is not None
        self.ingest.server.close()
        egress_records = [await self._view(a) for a in self.egress_ids]
        metrics = (await self.api.get(f"{self.stack.base_url}/metrics")).text
        usage = (await self.api.get("/usage")).json()
        await self.api.aclose()
        await self._sfu_sessions_gone()
        await self.sample("rest", keys=True)
        await self.redis.aclose()
        return {
            "plan": asdict(plan),
            "egress": [
                {"adapter_id": a, "record": rec, "endpoint": ep.summary()}
                for a, rec, ep in zip(self.egress_ids, egress_records, self.egress, strict=True)
            ],
            "ingest": [gen.summary() for gen in self.generations],
            "create_retries": self.create_retries,
            "sfu_reclaim_s": self.sfu_reclaim_s,
            "cluster": cluster_counters(metrics),
            "usage": {k: usage.get(k) for k in ("egressBytes", "ingestBytes")},
            "samples": self.samples,
        }

    async def sample(self, label: str, *, keys: bool = False) -> dict[str, Any]:
        """Memory and fds of every process of the stack, its worker tree, Redis's keys."""
        stack = self.stack
        adapters = {f"egress{i}": a for i, a in enumerate(self.egress_ids)}
        adapters |= {  # live ones only: an ended one's pid may belong to someone else now
            f"ingest{g.slot}.{g.number}": g.adapter_id for g in self.generations if not g.record
        }
        horses = {await self._pid(a): name for name, a in adapters.items()}
        pool = {int(await self.redis.hget(w, "pid") or 0) for w in await self._rq_workers()}
        top = stack.worker.pid
        tree = process_tree(top)
        info: dict[str, Any] = await self.redis.info()
        pids = {"api": stack.api.pid, "sfu": stack.sfu.pid, "supervisor": top}
        pids |= {"redis": int(info["process_id"]), "soak": os.getpid()}
        for pid, (ppid, _, _) in tree.items():
            role = "worker" if pid in pool else "helper"  # the health server's process
            pids[horses.get(pid, f"{role}-{pid}" if ppid == top else f"?{pid}")] = pid
        below = Counter(pp for pp, _, _ in tree.values() if pp in pool)
        standbys = {p for p, (pp, _, _) in tree.items() if below[pp] == 1 and p not in horses}
        procs: dict[str, dict[str, int]] = {}
        for name, pid in pids.items():
            if (found := figures(pid)) is not None:
                procs[name] = found
            if name not in ("redis", "soak") and (stat := proc_stat(pid)) is not None:
                self.seen[pid] = (name, stat[1])
        sample: dict[str, Any] = {
            "label": label,
            "t": round(time.monotonic() - self.started, 1),
            "procs": procs,
            "tree": {
                "children": sorted(p for p, (pp, _, _) in tree.items() if pp == top),
                # beneath the pool, one standby each (worker.standby) aside
                "grandchildren": sorted(
                    p for p, (pp, _, _) in tree.items() if pp != top and p not in standbys
                ),
                "standbys": sorted(standbys),
                "zombies": sorted(p for p, (_, _, st) in tree.items() if st == "Z"),
                "pool": sorted(pool),
            },
            "redis": await redis_figures(self.redis, with_keys=keys),
            "used_memory": int(info["used_memory"]),
        }
        self.samples.append(sample)
        rss = sum(p["rss_kib"] for p in procs.values()) / 1024
        self.log(f"{label}: {len(procs)} processes, {rss:.0f} MiB RSS in all, {len(tree)} "
                 f"under the supervisor, {sample['redis']['dbsize']} Redis keys")  # fmt: skip
        return sample

    async def _sfu_sessions_gone(self) -> None:
        """Waits for the SFU to drop the sessions of the closed peers.

        Pipelines and test clients close their peer connections without telling the
        SFU, which notices when ICE consent runs out or the session idles: ~30 s.
        """

        async def gone() -> bool:
            return not [k async for k in self.redis.scan_iter("sluice:sfu:session:*")]

        started = time.monotonic()
        done = await poll_until(gone, self.plan.rest_wait_s)
        self.sfu_reclaim_s = round(time.monotonic() - started, 1)
        self.log(f"SFU sessions {'gone' if done else 'still there'} after {self.sfu_reclaim_s} s")

    async def _rq_workers(self) -> list[str]:
        return sorted(str(w) for w in await self.redis.smembers(f"rq:workers:{QUEUE}"))

    async def _chaos(self, ep: EgressEndpoint, deadline: float) -> None:
        rng = self.plan.rng(f"egress{ep.index}")
        loop = asyncio.get_running_loop()
        while True:
            gap = rng.uniform(*self.plan.chaos_gap_s)
            outage, mode = rng.uniform(0, self.plan.max_outage_s), rng.choice(DROP_MODES)
            if loop.time() + gap + outage + RECONNECT_WAIT_S > deadline:
                return
            await asyncio.sleep(gap)
            if not await ep.drop(mode, outage):
                self.log(f"egress{ep.index}: no re-dial after a {outage:.1f} s {mode} outage")
                return

    async def _slot(self, slot: int) -> None:
        rng = self.plan.rng(f"ingest{slot}")
        number = 0
        while not self.ending.is_set():
            life, end = rng.uniform(*self.plan.ingest_life_s), rng.choice(INGEST_ENDS)
            gen = Generation(slot, number, end)
            number += 1
            if not await self._create(gen):
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.ending.wait(), life)
            if self.ending.is_set():
                gen.end = "api"  # the run's end: closed through the API, like egress
            await self._end(gen)
            await asyncio.sleep(rng.uniform(0, 1))

    async def _create(self, gen: Generation) -> bool:
        item = ingest_item(self.ingest.url(gen), track=f"tts{gen.slot}")
        for _ in range(5):
            resp = await self.api.post("/adapters/websocket/new", json={"tracks": [item]})
            answer = resp.json()
            track = answer["tracks"][0] if answer.get("tracks") else answer
            if "adapterId" in track:
                gen.adapter_id = track["adapterId"]
                gen.pid = await self._pid(gen.adapter_id)
                self.generations.append(gen)
                return True
            self.create_retries.append(str(track.get("errorCode")))
            self.log(f"ingest{gen.slot}: create failed ({track.get('errorCode')}), retrying")
            await asyncio.sleep(1.0)
        return False

    async def _end(self, gen: Generation) -> None:
        """Ends one ingest adapter as planned and waits for its process to exit."""
        if gen.end == "abort" and gen.ws is not None:
            gen.ws.transport.abort()  # mid-stream: what was in flight is lost
        gen.stop.set()
        if gen.pushing is not None:
            await gen.pushing
        if gen.end == "api":
            # Stop sending and let the pipeline read it all (its heartbeat saves the
            # counters every second): then the final `bytes` must equal what was sent.
            if not await self._until(
                gen.adapter_id, lambda v: v["counters"]["bytes"] >= gen.sent_bytes
            ):
                self.log(f"ingest{gen.slot}.{gen.number}: not all it was sent is counted")
            body = {"tracks": [{"adapterId": gen.adapter_id}]}
            assert (await self.api.post("/adapters/websocket/close", json=body)).status_code == 200
        elif gen.end == "1001" and gen.ws is not None:
            await gen.ws.close(1001, "going away")
        # After an endpoint's close the pipeline plays its buffer out first.
        if not await self._until(gen.adapter_id, lambda v: v["state"] == "closed", timeout_s=20):
            self.log(f"ingest{gen.slot}.{gen.number}: not closed 20 s after its end")
        await self._wait_gone([gen.pid])
        gen.record = await self._view(gen.adapter_id)

    def _pid_of(self, label: str) -> int:
        found = [s["procs"][label]["pid"] for s in self.samples if label in s["procs"]]
        return found[-1] if found else 0

    async def _until(
        self, adapter_id: str, done: Callable[[dict[str, Any]], bool], timeout_s: float = 10.0
    ) -> bool:
        async def check() -> bool:
            return done(await self._view(adapter_id))

        return await poll_until(check, timeout_s)

    async def _wait_gone(self, pids: list[int], timeout_s: float = 10.0) -> None:
        async def gone() -> bool:
            return not any(alive(pid) for pid in pids if pid)

        if not await poll_until(gone, timeout_s):  # the rest sample's tree check tells
            self.log(f"adapter processes {pids} still running {timeout_s:.0f} s after closing")

    async def _pid(self, adapter_id: str) -> int:
        worker = await self.redis.hget(f"sluice:adapter:{adapter_id}", "worker")
        return int(str(worker).rsplit(":", 1)[1]) if worker else 0

    async def _view(self, adapter_id: str) -> dict[str, Any]:
        return dict((await self.api.get(f"/adapters/websocket/{adapter_id}")).json())


# --- entry points ---------------------------------------------------------------------


def left_alive(seen: dict[int, tuple[str, int]], timeout_s: float = 15.0) -> list[str]:
    """Processes of the stack still running `timeout_s` after its stop."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = [f"{name} ({pid})" for pid, (name, start) in seen.items() if alive(pid, start)]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.2)


async def soak(stack: Stack, plan: Plan) -> tuple[dict[str, Any], list[Check]]:
    """Runs the plan, stops the stack, checks; prints the summary."""
    runner = Soak(stack, plan)
    try:
        report = await runner.run()
    finally:
        stack.stop()
    report["left_after_stop"] = await asyncio.to_thread(left_alive, runner.seen)
    checks = run_checks(report, plan)
    report["checks"] = [asdict(c) for c in checks]
    print(f"seed {plan.seed}\n{render(report, checks)}")
    return report, checks


def main(argv: list[str] | None = None) -> int:
    from sluice.cli.devserver import redis_server_binary, spawn_redis
    from tests.conftest import free_port
    from tests.integration.helpers import start_stack

    parser = argparse.ArgumentParser(description="Sluice soak: adapters under endpoint chaos.")
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--egress", type=int, default=6, help="egress adapters (default 6)")
    parser.add_argument("--ingest", type=int, default=4, help="ingest slots (default 4)")
    parser.add_argument("--seed", type=int, help="default: from the clock; printed")
    parser.add_argument("--sample-every", type=float, default=10.0, metavar="S")
    args = parser.parse_args(argv)
    seed = args.seed if args.seed is not None else int(time.time()) % 100_000
    plan = Plan(args.minutes * 60, args.egress, args.ingest, seed, args.sample_every)
    binary = redis_server_binary()
    if binary is None:
        print("no redis-server: apt-get install redis-server", file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="sluice-soak-"))
    print(f"seed {seed}; logs in {work}", file=sys.stderr)
    port = free_port()
    server = spawn_redis(binary, port, work / "redis")
    try:
        stack = start_stack(
            f"redis://127.0.0.1:{port}/0", plan.workers, work, egress_backlog_s=plan.backlog_s
        )
        report, checks = asyncio.run(soak(stack, plan))
    finally:
        server.terminate()
        server.wait(timeout=10)
    out = Path("bench/results") / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(f"wrote {out}")
    return 0 if all(c.ok for c in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
