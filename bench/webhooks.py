"""Lifecycle webhooks: how soon an event reaches the receiver, and what a dead one costs.

One ingest adapter at a time is created and closed (`--rounds` times), each giving an
`adapter.active` and an `adapter.closed` event:

- `delivery`: a receiver in this process answers 200 at once; latency is the event's
  `createdAt` (Redis's clock at the transition) to the request's arrival here (this
  host's clock: Redis runs on it too): outbox, dispatcher, RQ queue, delivery process,
  HTTP POST.
- `create_ms_up`, `create_ms_dead`, `create_ms_up_again`: create and close latency with
  that receiver, then with one that accepts connections and never answers (each attempt
  waits out its 5 s), then with the first one back (so that drift over the run, e.g.
  SFU sessions piling up, does not pass for the dead webhook's cost): what a dead
  webhook costs a create or a close (nothing, if deliveries really are off the path).

It needs its own stack (the webhook URL is a setting of every process), so it is not
part of `python -m bench`.

    python -m bench.webhooks [--rounds 30] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.harness import APP, Stack, endpoint, ingest_item, progress, running_stack
from bench.report import distribution, print_table, ratio, write_result
from sluice.cli.devserver import free_port


class Arrivals:
    """Arrival time of each event id's first delivery."""

    def __init__(self, answer: bool) -> None:
        self.answer = answer
        self.first: dict[str, tuple[float, dict[str, Any]]] = {}
        self.changed = asyncio.Event()
        self.released = asyncio.Event()  # a silent receiver's requests end when it closes

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError, ValueError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
            length = int(head.split("content-length:", 1)[1].split("\r\n", 1)[0])
            event = json.loads(await reader.readexactly(length))
            self.first.setdefault(event["id"], (time.time(), event))
            self.changed.set()
            if not self.answer:
                await self.released.wait()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
        writer.close()

    async def wait_for(self, count: int, timeout_s: float) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.first) < count:
                self.changed.clear()
                await self.changed.wait()


@contextlib.asynccontextmanager
async def receiver(port: int, *, answer: bool) -> AsyncIterator[Arrivals]:
    arrivals = Arrivals(answer)
    server = await asyncio.start_server(arrivals.handle, "127.0.0.1", port)
    try:
        yield arrivals
    finally:
        arrivals.released.set()
        server.close()
        await server.wait_closed()


async def create_close(client: httpx.AsyncClient, url: str, rounds: int) -> dict[str, list[float]]:
    creates, closes = [], []
    for n in range(rounds):
        started = time.perf_counter()
        resp = await client.post(
            "/adapters/websocket/new", json={"tracks": [ingest_item(f"{url}{n}", "tts")]}
        )
        creates.append(time.perf_counter() - started)
        adapter_id = resp.json()["tracks"][0]["adapterId"]
        started = time.perf_counter()
        await client.post("/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]})
        closes.append(time.perf_counter() - started)
    return {"create": creates, "close": closes}


def _event_time(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["createdAt"].replace("Z", "+00:00")).timestamp()


async def run(stack: Stack, port: int, rounds: int) -> dict[str, Any]:
    result: dict[str, Any] = {}
    async with endpoint() as ep, stack.client() as client:
        async with receiver(port, answer=True) as up:
            progress(f"webhooks: {rounds} creates and closes, receiver up")
            timings_up = await create_close(client, ep.url("hook-"), rounds)
            await up.wait_for(2 * rounds, 30)
        lags = [(at - _event_time(event)) for at, event in up.first.values()]
        by_type = {
            kind: [at - _event_time(e) for at, e in up.first.values() if e["type"] == kind]
            for kind in ("adapter.active", "adapter.closed")
        }
        result["delivery_ms"] = distribution(lags, 1000)
        result["delivery_ms_by_type"] = {k: distribution(v, 1000) for k, v in by_type.items()}
        async with receiver(port, answer=False) as dead:
            progress(f"webhooks: {rounds} creates and closes, receiver dead")
            timings_dead = await create_close(client, ep.url("dead-"), rounds)
            await dead.wait_for(1, 10)
        async with receiver(port, answer=True):
            progress(f"webhooks: {rounds} creates and closes, receiver up again")
            timings_again = await create_close(client, ep.url("again-"), rounds)
    for name, timings in (("up", timings_up), ("dead", timings_dead), ("up_again", timings_again)):
        result[f"create_ms_{name}"] = distribution(timings["create"], 1000)
        result[f"close_ms_{name}"] = distribution(timings["close"], 1000)
    return result


def report(result: dict[str, Any]) -> None:
    rows = [
        ["delivery (createdAt → receiver)", *_cells(result["delivery_ms"])],
        *([f"  {kind}", *_cells(dist)] for kind, dist in result["delivery_ms_by_type"].items()),
        *(
            [f"{what}, webhook {phase.replace('_', ' ')}", *_cells(result[f"{what}_ms_{phase}"])]
            for what in ("create", "close")
            for phase in ("up", "dead", "up_again")
        ),
    ]
    print_table("webhooks (ms)", ["what", "n", "median", "p95", "max"], rows)
    up = [result[f"create_ms_{phase}"]["median"] for phase in ("up", "up_again")]
    median = ratio(result["create_ms_dead"]["median"], sum(up) / 2)
    print(f"create median, dead / up webhook (mean of before and after): {median}")


def _cells(dist: dict[str, Any]) -> list[Any]:
    return [dist["n"], dist["median"], dist["p95"], dist["max"]]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.webhooks", description=__doc__)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="5 rounds")
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    rounds = 5 if args.quick else args.rounds
    port = free_port()
    settings = {
        "SLUICE_WEBHOOKS": f"{APP}:http://127.0.0.1:{port}/hook",
        "SLUICE_SIGNING_SECRETS": f"{APP}:bench-signing-secret",
        "SLUICE_APP_CREATES_PER_S": "0",
    }
    with running_stack(workers=2, settings=settings) as stack:
        result = asyncio.run(run(stack, port, rounds))
    result["config"] = {"rounds": rounds, "workers": 2, "webhook_processes": 2}
    report(result)
    path = write_result("webhooks", result, args.results_dir)
    progress(f"webhooks: wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
