"""Control plane: create and close latency, and the create rate the API sustains.

A create answers once the adapter is `active` (its pipeline connected both sides) or has
failed, so create latency here is create → `active`. All adapters are egress PCM on one
tone replayed from pre-encoded Opus (the publisher encodes nothing); the endpoint is a
WebSocket server in this process.

- `idle`: one adapter at a time on an idle pool: create, close, `--samples` times.
- `filling` / `full`: the pool filled one create at a time (the k-th create finds k-1
  workers busy with a long-running adapter), then, with every worker busy, each adapter
  closed one at a time; plus creates into the full pool, which must answer
  `no_capacity` after the pickup timeout. Repeated until `--samples` of each.
- `burst`: as many creates at once as the pool has workers (all succeed), then one
  close of them all; creates per second over the burst.
- `rate_*`: `--rate-requests` creates, `--concurrency` in flight, one HTTP client:
  `rate_worker_fail` dials a closed port (enqueued, claimed by a worker, whose pipeline
  fails to dial: the whole path, fast); `rate_api_refused` names an unknown session
  (refused by the API after one Redis lookup). Requests per second and latency.

The stack runs with the app's create-rate limit lifted (`SLUICE_APP_CREATES_PER_S=0`):
with the default 20/s the API's rate limiter would be measured, not the API.

    python -m bench.control [--samples 20] [--pool 10] [--rate-requests 60] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

from bench.harness import Stack, egress_item, endpoint, progress, running_stack
from bench.media import OpusReplayTrack
from bench.report import distribution, print_table, write_result
from sluice.cli.devserver import free_port
from sluice.media.aiortc_internals import register_codecs
from sluice.media.ice import set_loopback

STACK_ENV = {"SLUICE_APP_CREATES_PER_S": "0"}
WHERE = {
    "api process": "`sluice api`: validates, writes Redis, enqueues, waits for the outcome",
    "worker pool": "`sluice worker`: claims the job, forks a process, runs the pipeline",
    "redis": "a throwaway redis-server on loopback",
}


async def timed_create(client: httpx.AsyncClient, item: dict[str, str]) -> tuple[float, str, str]:
    """(seconds, outcome, adapter id): outcome is `ok`, an error code or `http_<status>`."""
    started = time.monotonic()
    resp = await client.post("/adapters/websocket/new", json={"tracks": [item]})
    elapsed = time.monotonic() - started
    if resp.status_code != 200:
        code = resp.json().get("errorCode", "") if resp.content else ""
        return elapsed, f"http_{resp.status_code}:{code}", ""
    track = resp.json()["tracks"][0]
    if "errorCode" in track:
        return elapsed, str(track["errorCode"]), ""
    return elapsed, "ok", str(track["adapterId"])


async def timed_close(client: httpx.AsyncClient, adapter_ids: list[str]) -> float:
    started = time.monotonic()
    resp = await client.post(
        "/adapters/websocket/close", json={"tracks": [{"adapterId": a} for a in adapter_ids]}
    )
    resp.raise_for_status()
    return time.monotonic() - started


def _ms(values: list[float]) -> dict[str, float | int | None]:
    return distribution(values, 1000)


async def rate(
    client: httpx.AsyncClient, item: dict[str, str], requests: int, concurrency: int
) -> dict[str, Any]:
    """`requests` creates with `concurrency` in flight; rate over the whole run."""
    todo = iter(range(requests))
    latencies: list[float] = []
    outcomes: Counter[str] = Counter()
    leftovers: list[str] = []

    async def one_client() -> None:
        for _ in todo:
            seconds, outcome, adapter_id = await timed_create(client, item)
            latencies.append(seconds)
            outcomes[outcome] += 1
            if adapter_id:
                leftovers.append(adapter_id)

    started = time.monotonic()
    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    elapsed = time.monotonic() - started
    if leftovers:
        await timed_close(client, leftovers)
    return {
        "requests": requests,
        "concurrency": concurrency,
        "elapsed_s": round(elapsed, 2),
        "requests_per_s": round(requests / elapsed, 1),
        "latency_ms": _ms(latencies),
        "outcomes": dict(outcomes),
    }


async def run(
    stack: Stack, samples: int, rate_requests: int, concurrency: int, settle_s: float
) -> dict[str, Any]:
    set_loopback(True)
    sessions = stack.sessions()
    pool = stack.workers
    result: dict[str, Any] = {}
    async with endpoint() as ep, stack.client() as client:
        try:
            session_id, _ = await sessions.publish(OpusReplayTrack(), "mic")

            def item(i: int) -> dict[str, str]:
                return egress_item(ep.url(f"control-{i}"), session_id, "mic", "pcm")

            # idle pool: one at a time
            creates, closes, failures = [], [], Counter[str]()
            for i in range(samples):
                seconds, outcome, adapter_id = await timed_create(client, item(i))
                if outcome != "ok":
                    failures[outcome] += 1
                    continue
                creates.append(seconds)
                closes.append(await timed_close(client, [adapter_id]))
                await asyncio.sleep(settle_s)  # the worker is free again before the next
            result["idle"] = {
                "create_to_active_ms": _ms(creates),
                "close_ms": _ms(closes),
                "failures": dict(failures),
            }
            progress(f"control: idle pool, {len(creates)} creates and closes")

            # filling, then a full pool
            filling, full_close, over, over_outcomes = [], [], [], Counter[str]()
            rounds = math.ceil(samples / pool)
            for r in range(rounds):
                ids = []
                for i in range(pool):
                    seconds, outcome, adapter_id = await timed_create(client, item(1000 * r + i))
                    if outcome == "ok":
                        filling.append(seconds)
                        ids.append(adapter_id)
                    else:
                        over_outcomes[f"filling:{outcome}"] += 1
                for _ in range(max(1, samples // rounds // 4)):
                    seconds, outcome, adapter_id = await timed_create(client, item(-1))
                    over.append(seconds)
                    over_outcomes[outcome] += 1
                    if adapter_id:
                        ids.append(adapter_id)
                for adapter_id in ids:
                    full_close.append(await timed_close(client, [adapter_id]))
                progress(f"control: full pool, round {r + 1}/{rounds} ({pool} workers)")
                await asyncio.sleep(settle_s * 4)
            result["filling"] = {"create_to_active_ms": _ms(filling), "pool": pool}
            result["full"] = {
                "close_ms": _ms(full_close),
                "create_into_full_pool_ms": _ms(over),
                "outcomes": dict(over_outcomes),
            }

            # burst: the whole pool at once
            burst_ids, burst_lat = [], []
            started = time.monotonic()
            done = await asyncio.gather(
                *(timed_create(client, item(5000 + i)) for i in range(pool))
            )
            burst_s = time.monotonic() - started
            burst_outcomes = Counter(outcome for _, outcome, _ in done)
            for seconds, _, adapter_id in done:
                burst_lat.append(seconds)
                if adapter_id:
                    burst_ids.append(adapter_id)
            close_all_s = await timed_close(client, burst_ids)
            result["burst"] = {
                "creates": pool,
                "succeeded": len(burst_ids),
                "elapsed_s": round(burst_s, 3),
                "creates_per_s": round(pool / burst_s, 1),
                "latency_ms": _ms(burst_lat),
                "close_all_ms": round(close_all_s * 1000, 1),
                "outcomes": dict(burst_outcomes),
            }
            progress(f"control: burst of {pool} creates in {burst_s:.2f} s")
            await asyncio.sleep(settle_s * 4)
            closed_port = f"ws://127.0.0.1:{free_port()}/closed"
            result["rate_worker_fail"] = await rate(
                client,
                egress_item(closed_port, session_id, "mic", "pcm"),
                rate_requests,
                concurrency,
            )
            progress(
                f"control: rate, worker fail: {result['rate_worker_fail']['requests_per_s']}/s"
            )
            unknown = egress_item(closed_port, "no-such-session", "mic", "pcm")
            result["rate_api_refused"] = await rate(client, unknown, rate_requests * 4, concurrency)
            progress(
                f"control: rate, API refused: {result['rate_api_refused']['requests_per_s']}/s"
            )
        finally:
            await sessions.close()
    result["where"] = WHERE
    result["config"] = {
        "samples": samples,
        "pool": pool,
        "rate_requests": rate_requests,
        "concurrency": concurrency,
        "stack_env": STACK_ENV,
    }
    return result


def show(result: dict[str, Any]) -> None:
    rows = []
    for name, key in (
        ("create→active, idle pool", ("idle", "create_to_active_ms")),
        ("close, idle pool", ("idle", "close_ms")),
        ("create→active, pool filling", ("filling", "create_to_active_ms")),
        ("close, full pool", ("full", "close_ms")),
        ("create into full pool", ("full", "create_into_full_pool_ms")),
        ("burst create (whole pool)", ("burst", "latency_ms")),
        ("rate: fails at worker", ("rate_worker_fail", "latency_ms")),
        ("rate: refused by API", ("rate_api_refused", "latency_ms")),
    ):
        d = result[key[0]][key[1]]
        rows.append([name, d["n"], d["median"], d["p95"], d["max"]])
    print_table("control plane latency (ms)", ["what", "n", "median", "p95", "max"], rows)
    rows = [
        ["burst (succeed)", result["burst"]["creates"], None, result["burst"]["creates_per_s"]],
    ]
    for name in ("rate_worker_fail", "rate_api_refused"):
        r = result[name]
        rows.append([name, r["requests"], r["concurrency"], r["requests_per_s"]])
    print_table("creates per second", ["what", "requests", "in flight", "per s"], rows)
    print(f"full pool outcomes: {result['full']['outcomes']}")
    for name in ("rate_worker_fail", "rate_api_refused"):
        print(f"{name} outcomes: {result[name]['outcomes']}")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.control", description=__doc__)
    parser.add_argument("--samples", type=int, default=20, help="samples per latency")
    parser.add_argument("--pool", type=int, default=10, help="worker pool (own stack only)")
    parser.add_argument("--rate-requests", type=int, default=60, help="creates per rate run")
    parser.add_argument("--concurrency", type=int, default=8, help="creates in flight")
    parser.add_argument("--quick", action="store_true", help="smoke run: 3 samples")
    parser.add_argument("--results-dir", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None, stack: Stack | None = None) -> dict[str, Any]:
    register_codecs()  # this process makes peer connections of its own
    args = parse(argv)
    if args.quick:
        samples, pool, requests, concurrency, settle = 3, 2, 6, 3, 0.1
    else:
        samples, pool, requests, concurrency = args.samples, args.pool, args.rate_requests, 8
        concurrency, settle = args.concurrency, 0.25
    with contextlib.ExitStack() as exit_stack:
        if stack is None:
            stack = exit_stack.enter_context(running_stack(workers=pool, settings=STACK_ENV))
        result = asyncio.run(run(stack, samples, requests, concurrency, settle))
    result["quick"] = args.quick
    path = write_result("control", result, args.results_dir)
    show(result)
    print(f"written to {path}")
    return result


if __name__ == "__main__":
    main()
