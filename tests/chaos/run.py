"""The whole-host chaos run: a deployment, a streaming fleet, then one failure per step.

`python -m tests.chaos` (`make chaos`) runs every step at full size; `--short` is the
form `make test` runs. Each step prints what it measured and its checks; the run exits
1 if any check failed, and prints the hosts' logs then.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import tempfile
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from tests.chaos import fleet
from tests.chaos.deployment import Deployment, Shape
from tests.chaos.fleet import Endpoints, Publisher, Stream
from tests.chaos.hosts import adopt_orphans, reap_orphans
from tests.chaos.observe import LoopWatch, Verdicts, records


@dataclass(frozen=True, slots=True)
class Size:
    adapters: int  # streaming through every step
    processes: int  # per worker host
    burst: int  # creates in flight when an API replica dies
    load_creates: int
    load_seconds: float
    resume_within_s: float  # egress adapters of a killed worker host stream again by then

    @classmethod
    def full(cls) -> Size:
        return cls(
            adapters=20,
            processes=16,
            burst=30,
            load_creates=500,
            load_seconds=10.0,
            resume_within_s=5.0,
        )

    @classmethod
    def short(cls) -> Size:
        # In the test suite the machine runs other work besides: 5 s of slack on the
        # resume (the failure is found by heartbeat TTL + reap pass, 3 to 4 s, by design).
        return cls(
            adapters=6,
            processes=6,
            burst=10,
            load_creates=100,
            load_seconds=4.0,
            resume_within_s=10.0,
        )


class Chaos:
    """The deployment, its fleet, and what every step shares."""

    def __init__(self, deployment: Deployment, endpoints: Endpoints, size: Size) -> None:
        self.d = deployment
        self.endpoints = endpoints
        self.size = size
        self.verdicts = Verdicts()
        self.watch = LoopWatch()
        self.publishers: list[Publisher] = []
        self.streams: list[Stream] = []
        self.media = fleet.media()
        self._named = 0

    def api(self, timeout_s: float = 30.0) -> httpx.AsyncClient:
        return self.d.client(timeout_s)

    async def publish(self) -> None:
        """One publisher per SFU node that has none alive.

        A publisher's session can end without the runner noticing (its peer starved of
        CPU past ICE consent on a loaded machine): one the API no longer knows is replaced.
        """
        async with self.api(timeout_s=10) as api:
            for publisher in list(self.publishers):
                if (await api.get(f"/sessions/{publisher.session_id}")).status_code == 404:
                    print(f"  (publisher {publisher.session_id} on {publisher.node_url} gone)")
                    self.publishers.remove(publisher)
                    await publisher.close()
        alive = {p.node_url for p in self.publishers}
        for node in self.d.sfu:
            if node.url not in alive and node.alive():
                self.publishers.append(await Publisher.start(node.url, *self.media))

    async def fill(self) -> list[Stream]:
        """Creates streams until `size.adapters` are live; returns the new ones."""
        self.streams = [s for s in self.streams if self.is_live(s)]
        missing = self.size.adapters - len(self.streams)
        if missing <= 0:
            return []
        sources = [p.session_id for p in self.publishers]
        new = fleet.plan(missing, sources, start=self._named)
        self._named += missing
        failed = new
        async with self.api() as api:
            for _ in range(8):  # a busy machine's pool may be slow to claim: try again
                for start in range(0, len(failed), 4):  # a few at a time: no burst here
                    batch = failed[start : start + 4]
                    await asyncio.gather(*(fleet.create(api, self.endpoints, s) for s in batch))
                failed = [s for s in new if not s.adapter_id]
                if not failed:
                    break
                await asyncio.sleep(1.0)
        if failed:
            why = [(s.name, s.create_status, s.create_error) for s in failed]
            raise RuntimeError(f"creates failed: {why}")
        self.streams += new
        await self.flowing(new, 20.0)
        return new

    def is_live(self, stream: Stream) -> bool:
        record = records(self.d.conn, [stream.adapter_id]).get(stream.adapter_id, {})
        return record.get("state") in ("active", "reconnecting")

    async def flowing(self, streams: list[Stream], within_s: float) -> None:
        """Waits until every egress stream got a Packet in the last second."""
        deadline = time.monotonic() + within_s
        while True:
            now = time.monotonic()
            late = [s.name for s in streams if s.egress and now - s.last_packet_at() > 1.0]
            if not late:
                return
            if now > deadline:
                raise RuntimeError(f"streams not flowing after {within_s} s: {late}")
            await asyncio.sleep(0.2)

    def final_checks(self) -> None:
        """What must hold of every stream the run ever had, whatever happened to it."""
        print("\n== whole run")
        every = list(self.endpoints.streams.values())
        repeats = {s.name: s.repeats() for s in every if s.egress and s.repeats()}
        self.verdicts.check(
            "run", "no sequence number ever repeated", not repeats, str(repeats or "none")
        )
        jpegs = sum(len(conn.packets) for s in every if s.kind == "jpeg" for conn in s.connections)
        bad = sum(conn.bad_jpegs for s in every for conn in s.connections)
        self.verdicts.check("run", "no corrupted JPEG was ever sent", not bad, f"{bad} of {jpegs}")

    async def close_all(self) -> None:
        ids = [{"adapterId": s.adapter_id} for s in self.streams if s.adapter_id]
        async with self.api() as api:
            for start in range(0, len(ids), 64):
                await api.post(
                    "/adapters/websocket/close", json={"tracks": ids[start : start + 64]}
                )

    async def stop_publishers(self) -> None:
        for publisher in self.publishers:
            await publisher.close()
        self.publishers = []


Step = Callable[[Chaos], Awaitable[None]]


def steps() -> dict[str, Step]:
    from tests.chaos import step_api, step_hosts, step_state

    return {
        "worker-host": step_hosts.kill_worker_host,
        "api-replica": step_api.kill_api_replica,
        "sfu-node": step_hosts.kill_sfu_node,
        "redis": step_state.restart_redis_empty,
        "load": step_api.load_test,
    }


async def run(size: Size, chosen: list[str], log_dir: Path) -> Verdicts:
    shape = Shape(
        processes=size.processes,
        # Creates per second per app: the load test's 50/s meets 429s as well as 503s.
        settings={"app_creates_per_s": 40, "app_max_adapters": 200},
    )
    deployment = Deployment(shape, log_dir)
    with deployment:
        print(f"deployment up: {', '.join(h.name for h in deployment.hosts)}; logs in {log_dir}")
        async with Endpoints() as endpoints:
            chaos = Chaos(deployment, endpoints, size)
            chaos.watch.start()
            try:
                await chaos.publish()
                await chaos.fill()
                print(f"{len(chaos.streams)} adapters streaming")
                for name, step in steps().items():
                    if name not in chosen:
                        continue
                    print(f"\n== {name}")
                    started = time.monotonic()
                    try:
                        await step(chaos)
                    except Exception as exc:  # a step that breaks is a failed check
                        traceback.print_exc()
                        chaos.verdicts.check(name, "step ran to its end", False, repr(exc))
                    print(f"  ({time.monotonic() - started:.1f} s)")
                    if revived := deployment.revive():
                        print(f"  (started again after the step: {', '.join(revived)})")
                    try:
                        await chaos.publish()
                        await chaos.fill()
                    except RuntimeError as exc:  # the next step runs on what there is
                        chaos.verdicts.check(
                            name, "the fleet streams again after it", False, str(exc)
                        )
                    reap_orphans(keep={h.pid for h in deployment.hosts if h.proc})
                chaos.final_checks()
                await chaos.close_all()
            finally:
                await chaos.watch.stop()
                await chaos.stop_publishers()
        if chaos.verdicts.failed:
            print(deployment.tails())
    return chaos.verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--short", action="store_true", help="the form make test runs")
    parser.add_argument("--steps", default=",".join(steps()), help="comma-separated steps")
    parser.add_argument("--logs", type=Path, help="where the hosts log (default: a temp dir)")
    args = parser.parse_args()
    size = Size.short() if args.short else Size.full()
    adopt_orphans()
    started = time.monotonic()
    load = os.getloadavg()
    with contextlib.ExitStack() as stack:
        log_dir = args.logs or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        verdicts = asyncio.run(run(size, args.steps.split(","), log_dir))
    print(
        f"\n{verdicts.summary()}\n({time.monotonic() - started:.0f} s; load average before "
        f"{load[0]:.1f}, after {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)"
    )
    raise SystemExit(1 if verdicts.failed else 0)
