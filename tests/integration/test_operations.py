"""Operations end to end: /metrics and usage agree with what real endpoints saw; /readyz."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from sluice.cli.devserver import redis_server_binary, spawn_redis
from sluice.wire.packet import encode
from tests.conftest import NO_REDIS, free_port
from tests.integration.audio import StereoToneTrack, tone_pcm
from tests.integration.helpers import Stack, egress_item, endpoint, ingest_item, start_stack

pytestmark = pytest.mark.integration
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def scrape(stack: Stack) -> Samples:
    async with httpx.AsyncClient(timeout=10) as client:
        resp = await client.get(f"{stack.base_url}/metrics")
    assert resp.status_code == 200
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }


async def scrape_until(stack: Stack, done: Callable[[Samples], bool], timeout_s: float) -> Samples:
    deadline = time.monotonic() + timeout_s
    while True:
        samples = await scrape(stack)
        if done(samples) or time.monotonic() > deadline:
            return samples
        await asyncio.sleep(0.1)


def by_direction(samples: Samples, name: str, direction: str) -> float:
    return samples[(name, (("direction", direction),))]


@pytest.mark.own_stack  # counts what the API process counted since it started
async def test_metrics_and_usage_agree_with_the_endpoints(stack: Stack) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 660), "mic")
    pcm = tone_pcm(440, 440, 2.0)
    sent = [encode(0, 0, pcm[i : i + 16_384]) for i in range(0, len(pcm), 16_384)] + [b""]

    async def push(ws: Any) -> None:
        for message in sent:
            await ws.send(message)

    async with endpoint() as egress_ep, endpoint() as ingest_ep, stack.client() as client:
        ingest_ep.on_connect = push
        resp = await client.post(
            "/adapters/websocket/new",
            json={"tracks": [egress_item(egress_ep.url, session_id), ingest_item(ingest_ep.url)]},
        )
        assert resp.status_code == 200, resp.text
        ids = [t["adapterId"] for t in resp.json()["tracks"]]

        def reported(samples: Samples) -> bool:  # by the adapters' heartbeats
            return all(
                by_direction(samples, name, "egress") > 0
                for name in ("sluice_adapter_bytes_total", "sluice_adapter_loop_lag_seconds_count")
            )

        during = await scrape_until(stack, reported, timeout_s=10)
        for direction in ("egress", "ingest"):
            key = ("sluice_adapters", (("direction", direction), ("state", "active")))
            assert during[key] == 1
        assert by_direction(during, "sluice_adapter_bytes_total", "egress") > 0
        assert by_direction(during, "sluice_adapter_loop_lag_seconds_count", "egress") > 0

        resp = await client.post(
            "/adapters/websocket/close", json={"tracks": [{"adapterId": i} for i in ids]}
        )
        assert resp.status_code == 200, resp.text
        views = [(await client.get(f"/adapters/websocket/{i}")).json() for i in ids]
        usage = (await client.get("/usage")).json()
        received = sum(len(m) for c in egress_ep.connections for m in c.messages)
    await sessions.close()

    after = await scrape(stack)
    egress_view, ingest_view = views
    print(f"egress: endpoint got {received} B; ingest: endpoint sent {sum(map(len, sent))} B")
    # Egress: the endpoint's bytes = the adapter's counter = the metric = the app's usage.
    assert egress_view["counters"]["bytes"] == received
    assert by_direction(after, "sluice_adapter_bytes_total", "egress") == received
    assert usage["egressBytes"] == received
    packets = sum(len(c.messages) for c in egress_ep.connections)
    assert by_direction(after, "sluice_adapter_packets_total", "egress") == packets
    # Ingest: every byte the endpoint sent was a valid Packet, so all of it counts.
    assert ingest_view["counters"]["bytes"] == sum(map(len, sent))
    assert by_direction(after, "sluice_adapter_bytes_total", "ingest") == sum(map(len, sent))
    assert usage["ingestBytes"] == sum(map(len, sent))
    for direction in ("egress", "ingest"):
        key = ("sluice_adapter_closes_total", (("direction", direction), ("reason", "api_close")))
        assert after[key] == 1
        created = ("sluice_api_creates_total", (("direction", direction), ("outcome", "active")))
        assert after[created] == 1
        latency = ("sluice_adapter_create_seconds_count", (("direction", direction),))
        assert after[latency] == 1
        key = ("sluice_adapters", (("direction", direction), ("state", "active")))
        assert after[key] == 0
    assert after[("sluice_api_closes_total", (("outcome", "closed"),))] == 2


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    binary = redis_server_binary()
    if binary is None:
        pytest.skip(NO_REDIS)
    port = free_port()
    servers = [spawn_redis(binary, port, tmp_path / "redis")]

    def restart_empty() -> None:
        servers[0].kill()
        servers[0].wait()
        servers[0] = spawn_redis(binary, port, tmp_path / "redis-again")

    yield f"redis://127.0.0.1:{port}/0", servers[0], restart_empty  # type: ignore[misc]
    servers[0].kill()
    servers[0].wait()


async def wait_ready(client: httpx.AsyncClient, timeout_s: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if (await client.get("/readyz")).status_code == 200:
            return time.monotonic() - started
        await asyncio.sleep(0.1)
    raise AssertionError(
        f"/readyz not ready after {timeout_s} s: {(await client.get('/readyz')).text}"
    )


async def test_readyz_follows_redis(own_redis: Any, tmp_path: Path) -> None:
    url, server, restart_empty = own_redis
    redis_pid = server.pid
    stack = start_stack(url, 1, tmp_path)
    try:
        async with httpx.AsyncClient(base_url=stack.base_url, timeout=10) as client:
            ready = await client.get("/readyz")
            assert ready.status_code == 200, ready.text
            assert ready.json()["checks"] == {"redis": "ok", "workers": 1, "sfu": "ok"}
            os.kill(redis_pid, signal.SIGSTOP)
            try:
                down = await client.get("/readyz")
            finally:
                os.kill(redis_pid, signal.SIGCONT)
            assert down.status_code == 503
            assert down.json()["checks"]["redis"] != "ok"
            assert (await client.get("/healthz")).status_code == 200  # alive all along
            await wait_ready(client, 5)

            # Restarted without persistence: the worker registers itself with RQ again.
            restart_empty()
            took = await wait_ready(client, 15)
            print(f"ready again {took:.1f} s after Redis restarted empty")
            async with endpoint() as ep, stack.client() as app:
                resp = await app.post(
                    "/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]}
                )
                assert resp.status_code == 200, resp.text
    finally:
        stack.stop()
