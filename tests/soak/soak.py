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
import random
import re
import sys
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import redis.asyncio
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sluice.wire.packet import encode
from sluice.wire.packet_pb2 import Packet
from tests.integration.audio import StereoToneTrack, tone_pcm
from tests.integration.helpers import Stack, egress_item, ingest_item

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


# --- /proc --------------------------------------------------------------------------


def proc_stat(pid: int) -> tuple[int, int, str] | None:
    """(ppid, start time in ticks, state) of a process; None once it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()  # fields 3... of proc(5)
    return int(rest[1]), int(rest[19]), rest[0]


def alive(pid: int, start: int | None = None) -> bool:
    """Whether `pid` runs (and is the same process: started at `start`), zombies excluded."""
    found = proc_stat(pid)
    return found is not None and found[2] != "Z" and (start is None or found[1] == start)


def figures(pid: int) -> dict[str, int] | None:
    """RSS and PSS (KiB) from smaps_rollup, and the number of open fds."""
    try:
        rollup = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        fds = len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None
    kib = {line.split(":")[0]: int(line.split()[1]) for line in rollup[1:] if ":" in line}
    return {"pid": pid, "rss_kib": kib.get("Rss", 0), "pss_kib": kib.get("Pss", 0), "fds": fds}


def process_tree(root: int) -> dict[int, tuple[int, int, str]]:
    """Every descendant of `root`: pid → (ppid, start, state)."""
    table = {int(e): s for e in os.listdir("/proc") if e.isdigit() and (s := proc_stat(int(e)))}
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _, _) in table.items():
        children[ppid].append(pid)
    found, todo = {}, [root]
    while todo:
        for child in children[todo.pop()]:
            found[child] = table[child]
            todo.append(child)
    return found


async def poll_until(check: Callable[[], Awaitable[bool]], timeout_s: float) -> bool:
    """Waits for another process's state (an API view, /proc): there is no event to await.

    Returns False on a timeout: the checks then report what was not reached.
    """
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout_s):
            while not await check():  # noqa: ASYNC110
                await asyncio.sleep(0.2)
            return True
    return False


# --- endpoints ----------------------------------------------------------------------


class EgressEndpoint:
    """One egress adapter's endpoint: counts what arrives, drops the connection on demand.

    Arrivals are deduplicated by `sequenceNumber` (a send cut by a drop is re-sent on the
    next connection) in a bitmap, so a 30-minute run keeps no payloads.
    """

    def __init__(self, index: int) -> None:
        self.index = index
        self.seen = bytearray()
        self.unique = self.unique_bytes = self.duplicates = self.undecodable = 0
        self.max_sequence = -1
        self.connections = 0
        self.drops: list[str] = []
        self.refusing = False
        self.current: ServerConnection | None = None
        self.server: Server | None = None
        self.port = 0
        self._arrived = asyncio.Event()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/egress/{self.index}"

    async def listen(self) -> None:
        self.server = await serve(
            self._handler, "127.0.0.1", self.port, process_request=self._process_request
        )
        self.port = self.server.sockets[0].getsockname()[1]

    async def _process_request(self, ws: ServerConnection, _: Request) -> Response | None:
        return ws.respond(503, "away\n") if self.refusing else None

    async def _handler(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.current = ws
        self._arrived.set()
        with contextlib.suppress(ConnectionClosed):
            async for message in ws:
                self._count(message)

    def _count(self, message: bytes | str) -> None:
        if isinstance(message, str):
            self.undecodable += 1
            return
        sequence = Packet.FromString(message).sequenceNumber
        if sequence >= len(self.seen):
            self.seen.extend(bytes(sequence + 1 - len(self.seen) + 4096))
        if self.seen[sequence]:
            self.duplicates += 1
            return
        self.seen[sequence] = 1
        self.unique += 1
        self.unique_bytes += len(message)
        self.max_sequence = max(self.max_sequence, sequence)

    async def drop(self, mode: str, outage_s: float) -> bool:
        """Drops the connection, stays away `outage_s`; True once the adapter re-dialled."""
        before = self.connections
        self.refusing = True  # re-dials meanwhile get a 503
        if mode == "restart":  # the server goes: 1001 to its connection, then no listener
            assert self.server is not None
            self.server.close()
            await self.server.wait_closed()
        elif self.current is not None and mode == "1001":
            await self.current.close(1001, "going away")
        elif self.current is not None:
            self.current.transport.abort()
        self.drops.append(mode)
        await asyncio.sleep(outage_s)
        if mode == "restart":
            await self.listen()
        self.refusing = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(RECONNECT_WAIT_S):
                while self.connections == before:
                    self._arrived.clear()
                    await self._arrived.wait()
        return self.connections > before

    def summary(self) -> dict[str, Any]:
        return {
            "produced_seen": self.max_sequence + 1,
            "unique": self.unique,
            "unique_bytes": self.unique_bytes,
            "duplicates": self.duplicates,
            "undecodable": self.undecodable,
            "connections": self.connections,
            "drops": self.drops,
        }


@dataclass
class Generation:
    """One ingest adapter of a slot, from create to its final record."""

    slot: int
    number: int
    end: str  # how it is ended: one of INGEST_ENDS
    adapter_id: str = ""
    pid: int = 0
    sent_packets: int = 0
    sent_bytes: int = 0
    record: dict[str, Any] = field(default_factory=dict)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ws: ServerConnection | None = None
    pushing: asyncio.Task[None] | None = None

    def summary(self) -> dict[str, Any]:
        keep = ("slot", "number", "end", "adapter_id", "pid", "sent_packets", "sent_bytes")
        return {k: getattr(self, k) for k in keep} | {"record": self.record}


class IngestEndpoints:
    """One server for every ingest slot; the path says which generation connected."""

    def __init__(self) -> None:
        self.generations: dict[str, Generation] = {}
        self.server: Server | None = None
        ring = tone_pcm(440, 660, 12 * CHUNK_S)
        self.chunks = [ring[i : i + CHUNK] for i in range(0, len(ring), CHUNK)]

    async def listen(self) -> None:
        self.server = await serve(self._handler, "127.0.0.1", 0)

    def url(self, gen: Generation) -> str:
        assert self.server is not None
        path = f"/ingest/{gen.slot}/{gen.number}"
        self.generations[path] = gen
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}{path}"

    async def _handler(self, ws: ServerConnection) -> None:
        gen = self.generations[ws.request.path if ws.request else ""]
        gen.ws = ws
        gen.pushing = asyncio.create_task(self._push(gen, ws))
        await ws.wait_closed()
        gen.stop.set()
        await gen.pushing

    async def _push(self, gen: Generation, ws: ServerConnection) -> None:
        """Paced: chunk k leaves at start + k chunk durations, until told to stop."""
        loop = asyncio.get_running_loop()
        start, k = loop.time(), 0
        with contextlib.suppress(ConnectionClosed):
            while not gen.stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(gen.stop.wait(), start + k * CHUNK_S - loop.time())
                if gen.stop.is_set():
                    break
                message = encode(k, k * CHUNK // 4, self.chunks[k % len(self.chunks)])
                await ws.send(message)
                gen.sent_packets += 1
                gen.sent_bytes += len(message)
                k += 1


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
                "grandchildren": sorted(p for p, (pp, _, _) in tree.items() if pp != top),
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


# --- Redis and /metrics -----------------------------------------------------------------

# Key families: ids, names and numbers folded, so growth shows as a count per family.
_FAMILIES = [
    (re.compile(r"sluice:adapter:[0-9a-f]+"), "sluice:adapter:{id}"),
    (re.compile(r"sluice:app:[^:]+:creates:\d+"), "sluice:app:{app}:creates:{second}"),
    (re.compile(r"sluice:app:[^:]+:(adapters|live)"), r"sluice:app:{app}:\1"),
    (re.compile(r"sluice:usage:[^:]+:\d+"), "sluice:usage:{app}:{hour}"),
    (re.compile(r"sluice:sfu:session:[^:]+(:tracks)?"), r"sluice:sfu:session:{id}\1"),
    (re.compile(r"rq:(job|workers?|queue|wip|started|finished|failed|canceled|deferred|"
                r"scheduled|clean_registries|execution|executions|results):(.+)"), r"rq:\1:{…}"),
]  # fmt: skip
# What may exist without a TTL once every adapter is closed: bounded singletons, and the
# app index (one member per adapter ever created: see `check_keys`).
UNEXPIRING_AT_REST = {
    "sluice:metrics",
    "sluice:reaper",
    "sluice:app:{app}:adapters",
    "rq:workers",
    "rq:workers:{…}",
    "rq:queues",
}
# Live-only keys: empty zsets and sets vanish, and rq deletes a job that succeeded
# (result_ttl=0); a failed one would stay for an hour (failure_ttl).
ABSENT_AT_REST = {
    "sluice:heartbeats",
    "sluice:pending",
    "sluice:resuming",
    "sluice:app:{app}:live",
    "rq:job:{…}",
    "rq:queue:{…}",
    "rq:wip:{…}",
    "rq:started:{…}",
    "rq:failed:{…}",
}


def key_family(key: str) -> str:
    for pattern, name in _FAMILIES:
        if pattern.fullmatch(key):
            return pattern.sub(name, key)
    return key


async def redis_figures(conn: redis.asyncio.Redis, *, with_keys: bool) -> dict[str, Any]:
    """DBSIZE and keys per family; with `with_keys`, each key's TTL and size too."""
    names = [k async for k in conn.scan_iter(count=1000)]
    found: dict[str, Any] = {
        "dbsize": await conn.dbsize(),
        "families": dict(Counter(key_family(k) for k in names)),
    }
    if with_keys:
        sizes = {"hash": conn.hlen, "zset": conn.zcard, "set": conn.scard, "list": conn.llen}
        keys = {}
        for key in names:
            kind = await conn.type(key)
            size = await sizes[kind](key) if kind in sizes else 1
            keys[key] = {"ttl": await conn.ttl(key), "type": kind, "size": size}
        found["keys"] = keys
    return found


def cluster_counters(text: str) -> dict[str, float]:
    """`sluice_adapter_*_total` of the API's /metrics, as `name{label,...}` → value."""
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.startswith("sluice_adapter_") and sample.name.endswith("_total"):
                labels = ",".join(sample.labels[k] for k in sorted(sample.labels))
                values[f"{sample.name}{{{labels}}}"] = sample.value
    return values


# --- checks ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


def _sample(report: dict[str, Any], label: str) -> dict[str, Any]:
    return next(s for s in report["samples"] if s["label"] == label)


def _long_lived(name: str) -> bool:
    return not name.startswith(("ingest", "soak", "?"))


def check_memory(report: dict[str, Any]) -> list[Check]:
    """(a) After the warm-up, no long-lived process grows its RSS past the bound."""
    warm, last = _sample(report, "warm"), _sample(report, "last")
    found = []
    for name, end in last["procs"].items():
        start = warm["procs"].get(name)
        if not _long_lived(name) or start is None or start["pid"] != end["pid"]:
            continue
        growth = end["rss_kib"] - start["rss_kib"]
        adapter = name.startswith(("egress", "worker-"))
        bound = ADAPTER_GROWTH_BOUND_KIB if adapter else SERVICE_GROWTH_BOUND_KIB
        detail = (
            f"RSS {start['rss_kib'] / 1024:.1f} → {end['rss_kib'] / 1024:.1f} MiB "
            f"({growth:+d} KiB), PSS {start['pss_kib'] / 1024:.1f} → {end['pss_kib'] / 1024:.1f}"
        )
        found.append(Check(f"memory {name}", growth <= bound, f"{detail}; bound {bound} KiB"))
    return found


def check_processes(report: dict[str, Any], plan: Plan) -> list[Check]:
    """(b) At rest the worker host is its pool again; after the stop nothing is left."""
    base, rest = _sample(report, "baseline")["tree"], _sample(report, "rest")["tree"]
    return [
        Check(
            "no adapter process left at rest",
            not rest["grandchildren"] and not rest["zombies"],
            f"grandchildren {rest['grandchildren']}, zombies {rest['zombies']}",
        ),
        Check(
            "the pool is the one it started with",
            rest["children"] == base["children"]
            and rest["pool"] == base["pool"]
            and len(base["pool"]) == plan.workers,
            f"{len(rest['pool'])} pool workers of {plan.workers}, children "
            f"{len(base['children'])} → {len(rest['children'])} (pool + health server)",
        ),
        Check(
            "no process of the stack survives its stop",
            not report["left_after_stop"],
            f"left: {report['left_after_stop'] or 'none'}",
        ),
    ]


def check_fds(report: dict[str, Any]) -> list[Check]:
    """(c) fds at rest are back to their count after the warm-up; adapters' stay flat.

    The reference is the warm-up, not the first sample: connection pools (the API's to
    Redis, Redis's clients) grow on first concurrent use and keep their connections.
    """
    base, warm, last, rest = (_sample(report, x) for x in ("baseline", "warm", "last", "rest"))
    found = []
    for name, end in rest["procs"].items():
        start = warm["procs"].get(name)
        if _long_lived(name) and start is not None and start["pid"] == end["pid"]:
            first = base["procs"].get(name, {}).get("fds", "-")
            detail = f"{first} at the start, {start['fds']} after the warm-up, {end['fds']} at rest"
            found.append(Check(f"fds {name}", end["fds"] <= start["fds"] + FD_MARGIN, detail))
    for name, end in last["procs"].items():
        start = warm["procs"].get(name)
        if name.startswith("egress") and start is not None:
            detail = f"{start['fds']} after the warm-up, {end['fds']} at the end"
            found.append(Check(f"fds {name}", end["fds"] <= start["fds"] + FD_MARGIN, detail))
    return found


def check_keys(report: dict[str, Any]) -> list[Check]:
    """(d) At rest: live-only keys gone, every other key expires or is a bounded singleton."""
    keys = _sample(report, "rest")["redis"]["keys"]
    created = len(report["egress"]) + len(report["ingest"])
    records = {k: v for k, v in keys.items() if key_family(k) == "sluice:adapter:{id}"}
    live = sorted(k for k in keys if key_family(k) in ABSENT_AT_REST)
    unexpected = sorted(
        k for k, v in keys.items() if v["ttl"] < 0 and key_family(k) not in UNEXPIRING_AT_REST
    )
    unbounded = sorted(
        k
        for k, v in keys.items()
        if v["ttl"] < 0 and v["size"] > 100 and key_family(k) != "sluice:app:{app}:adapters"
    )
    index = [v["size"] for k, v in keys.items() if key_family(k) == "sluice:app:{app}:adapters"]
    return [
        Check(
            "closed adapter records all kept, all expiring",
            len(records) == created and all(v["ttl"] > 0 for v in records.values()),
            f"{len(records)} records for {created} adapters, TTLs "
            f"{min((v['ttl'] for v in records.values()), default=0)}-"
            f"{max((v['ttl'] for v in records.values()), default=0)} s",
        ),
        Check("no live-only key left", not live, f"left: {live or 'none'}"),
        Check(
            "the SFU dropped every session",
            # The node directory stays: the SFU is still running.
            not any(key_family(k).startswith("sluice:sfu:session:") for k in keys),
            f"in {report['sfu_reclaim_s']} s after the last peer left",
        ),
        Check(
            "no unexpected key without a TTL, none unbounded",
            not unexpected and not unbounded,
            f"without TTL: {sorted(k for k, v in keys.items() if v['ttl'] < 0)}",
        ),
        # Never trimmed: one member per adapter ever created, outliving its record.
        Check(
            "app index holds every adapter ever created",
            index == [created],
            f"{index} members for {created} creates (grows without bound)",
        ),
    ]


def check_egress(report: dict[str, Any]) -> list[Check]:
    """(e) Per egress adapter, endpoint and record agree.

    With M the last `sequenceNumber` + 1 the endpoint saw, S and D the record's
    `packets` and `dropped`, U the distinct sequence numbers seen and `drops` the drops
    the endpoint made:
    - every drop is re-dialled once: `reconnects == drops`, and the adapter ends
      `api_close` (an outage shorter than the window never closes it);
    - produced = sent + dropped: stamps are given at production, every Packet then
      leaves the backlog once, sent (counted after `send` returns) or dropped, and the
      final close is 1000 after the sender stopped, so M - 1 <= S + D <= M (the one
      Packet in the sender's hand at the close may arrive uncounted);
    - lost in flight L = M - U - D, sent while a connection was being cut: 0 <= L <=
      LOST_PER_DROP_MAX per drop; a negative L would be a Packet counted dropped that
      arrived;
    - at-least-once: the Packet whose send a drop interrupted is re-sent first, so
      duplicates <= drops;
    - `bytes` counts the same Packets: bytes per Packet agree on both sides.
    """
    found = []
    for i, adapter in enumerate(report["egress"]):
        rec, ep = adapter["record"], adapter["endpoint"]
        c = rec["counters"]
        produced, sent, dropped = ep["produced_seen"], c["packets"], c["dropped"]
        drops = len(ep["drops"])
        lost = produced - ep["unique"] - dropped
        sizes = (c["bytes"] / max(sent, 1), ep["unique_bytes"] / max(ep["unique"], 1))
        problems = [
            why
            for why, bad in (
                (f"ended {rec.get('closeReason')}", rec.get("closeReason") != "api_close"),
                (f"reconnects {c['reconnects']} != drops {drops}", c["reconnects"] != drops),
                ("sent + dropped != produced", not produced - 1 <= sent + dropped <= produced),
                (f"lost {lost}", not 0 <= lost <= LOST_PER_DROP_MAX * drops),
                (f"duplicates {ep['duplicates']} > drops", ep["duplicates"] > drops),
                (f"bytes/Packet {sizes[0]:.1f} vs {sizes[1]:.1f}", abs(sizes[0] - sizes[1]) > 8),
                (f"{ep['undecodable']} undecodable", ep["undecodable"] > 0),
            )
            if bad
        ]
        detail = (
            f"produced {produced} = sent {sent} + dropped {dropped} "
            f"(+{produced - sent - dropped}); seen {ep['unique']}, lost {lost}, duplicates "
            f"{ep['duplicates']}; {drops} drops, {c['reconnects']} reconnects"
        )
        found.append(Check(f"egress{i} counters", not problems, "; ".join(problems) or detail))
    return found


def check_ingest(report: dict[str, Any]) -> list[Check]:
    """(e) Per ingest adapter: `bytes` and `packets` are what the endpoint sent.

    Exact when the endpoint stopped sending before the end (closed through the API once
    the record had counted everything, or a 1001, which the pipeline reads up to);
    after an abort, what was still in flight is lost: 0 <= sent - counted <= 1 MiB.
    """
    found = []
    for end in INGEST_ENDS:
        gens = [g for g in report["ingest"] if g["end"] == end]
        want = "api_close" if end == "api" else "endpoint_closed"
        problems = []
        for g in gens:
            rec = g["record"]
            c = rec["counters"]
            short = g["sent_bytes"] - c["bytes"]
            exact = c["bytes"] == g["sent_bytes"] and c["packets"] == g["sent_packets"]
            if (rec["state"], rec.get("closeReason")) != ("closed", want):
                problems.append(f"{g['slot']}.{g['number']} {rec.get('closeReason')}")
            if (end != "abort" and not exact) or not 0 <= short <= INGEST_ABORT_LOSS_MAX:
                name = f"{g['slot']}.{g['number']}"
                problems.append(f"{name} sent {g['sent_bytes']} counted {c['bytes']}")
            if c["skipped"]:
                problems.append(f"{g['slot']}.{g['number']} skipped {c['skipped']}")
        lost = sum(g["sent_bytes"] - g["record"]["counters"]["bytes"] for g in gens)
        detail = f"{len(gens)} adapters, {want}, bytes == sent" + (
            f" (lost in aborts: {lost} bytes)" if end == "abort" else ""
        )
        found.append(Check(f"ingest ended by {end}", not problems, "; ".join(problems) or detail))
    found.append(
        Check(
            "every ingest create succeeded first time",
            not report["create_retries"],
            f"retried: {report['create_retries'] or 'none'}",
        )
    )
    return found


def check_totals(report: dict[str, Any]) -> list[Check]:
    """(e) Cluster totals in /metrics and the app's usage are the sums over the records:
    the store adds each save's growth to both in the script that saves the record."""
    records = {
        "egress": [a["record"] for a in report["egress"]],
        "ingest": [g["record"] for g in report["ingest"]],
    }
    cluster, usage = report["cluster"], report["usage"]
    found = []
    for direction, recs in records.items():
        wrong = []
        for counter, metric in (
            ("bytes", "sluice_adapter_bytes_total"),
            ("packets", "sluice_adapter_packets_total"),
            ("dropped", "sluice_adapter_backlog_dropped_total"),
            ("reconnects", "sluice_adapter_reconnects_total"),
        ):
            total = sum(r["counters"][counter] for r in recs)
            if cluster.get(f"{metric}{{{direction}}}") != total:
                wrong.append(f"{metric} {cluster.get(f'{metric}{{{direction}}}')} != {total}")
        total_bytes = sum(r["counters"]["bytes"] for r in recs)
        if usage[f"{direction}Bytes"] != total_bytes:
            wrong.append(f"usage {usage[f'{direction}Bytes']} != {total_bytes}")
        reasons = Counter(r.get("closeReason") for r in recs)
        for reason, count in reasons.items():
            if cluster.get(f"sluice_adapter_closes_total{{{direction},{reason}}}") != count:
                wrong.append(f"closes {reason} != {count}")
        detail = f"{total_bytes} bytes in {len(recs)} records == /metrics == usage; closes "
        detail += str(dict(reasons))
        found.append(Check(f"{direction} totals", not wrong, "; ".join(wrong) or detail))
    return found


def run_checks(report: dict[str, Any], plan: Plan) -> list[Check]:
    return [
        *check_memory(report),
        *check_processes(report, plan),
        *check_fds(report),
        *check_keys(report),
        *check_egress(report),
        *check_ingest(report),
        *check_totals(report),
    ]


def render(report: dict[str, Any], checks: list[Check]) -> str:
    """The summary: per process memory and fds, the chaos, the keys, the checks."""
    base, warm, last, rest = (_sample(report, x) for x in ("baseline", "warm", "last", "rest"))
    lines = [
        f"{'process':<22}{'pid':>8}{'RSS warm→last MiB':>22}{'Δ KiB':>8}"
        f"{'PSS warm→last MiB':>22}{'fds base/warm/last/rest':>26}"
    ]
    for name, end in last["procs"].items():
        start = warm["procs"].get(name, end)
        fds = [s["procs"].get(name, {}).get("fds", "-") for s in (base, warm, last, rest)]
        lines.append(
            f"{name:<22}{end['pid']:>8}"
            f"{start['rss_kib'] / 1024:>13.1f} → {end['rss_kib'] / 1024:<6.1f}"
            f"{end['rss_kib'] - start['rss_kib']:>+8d}"
            f"{start['pss_kib'] / 1024:>13.1f} → {end['pss_kib'] / 1024:<6.1f}"
            f"{'/'.join(map(str, fds)):>26}"
        )
    pss, rss = ([sum(p[k] for p in s["procs"].values()) / 1024 for s in (warm, last)]
                for k in ("pss_kib", "rss_kib"))  # fmt: skip
    lines.append(f"all processes: PSS {pss[0]:.0f} → {pss[1]:.0f} MiB, "
                 f"RSS {rss[0]:.0f} → {rss[1]:.0f} MiB (shared pages counted in each)")  # fmt: skip
    drops = Counter(m for a in report["egress"] for m in a["endpoint"]["drops"])
    reconnects = sum(a["record"]["counters"]["reconnects"] for a in report["egress"])
    ends = Counter(g["end"] for g in report["ingest"])
    lines.append(f"egress drops {dict(drops)}, reconnects {reconnects}; "
                 f"ingest adapters {len(report['ingest'])} ended {dict(ends)}")  # fmt: skip
    families = sorted(set(warm["redis"]["families"]) | set(rest["redis"]["families"]))
    lines.append("Redis keys per family, warm → rest: " + ", ".join(
        f"{f} {warm['redis']['families'].get(f, 0)}→{rest['redis']['families'].get(f, 0)}"
        for f in families
    ))  # fmt: skip
    lines += [f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}" for c in checks]
    return "\n".join(lines)


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
