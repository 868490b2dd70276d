"""Lifecycle webhooks (E7) against real processes: events, retries, signatures, and a dead
webhook that delays nothing."""

from __future__ import annotations

import asyncio
import itertools
import json
import statistics
import subprocess
import time
from typing import Any

import httpx
import pytest
import redis
from websockets.datastructures import Headers

from sluice_endpoint.webhooks import read_webhook
from tests.conftest import free_port
from tests.integration.audio import StereoToneTrack
from tests.integration.helpers import (
    APP,
    BIN,
    Stack,
    egress_item,
    endpoint,
)
from tests.integration.readme_verifiers import has_node, node_verifies, python_verifier
from tests.integration.webhook_receiver import receiver

pytestmark = pytest.mark.integration

SIGNING = "whsec-test-signing-secret"
WINDOW_S = 2.0


HOOK_PORT = free_port()  # the receiver's, known before the stack starts: a setting
# A stack of the module's own, whose app1 has a webhook on HOOK_PORT and a signing secret.
hooked = pytest.mark.workers(
    2,
    webhooks=f"{APP}:http://127.0.0.1:{HOOK_PORT}/hooks/sluice?token=hook-token",
    signing_secrets=f"{APP}:{SIGNING}",
    reconnect_window_s=WINDOW_S,
)


async def create(client: httpx.AsyncClient, item: dict[str, Any]) -> tuple[str, float]:
    started = time.perf_counter()
    resp = await client.post("/adapters/websocket/new", json={"tracks": [item]})
    took = time.perf_counter() - started
    assert resp.status_code == 200, resp.text
    return str(resp.json()["tracks"][0]["adapterId"]), took


async def close(client: httpx.AsyncClient, adapter_id: str) -> float:
    started = time.perf_counter()
    resp = await client.post(
        "/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]}
    )
    assert resp.status_code == 200, resp.text
    return time.perf_counter() - started


@hooked
async def test_active_then_closed_when_the_endpoint_vanishes(stack: Stack) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 660), "mic")
    async with receiver(HOOK_PORT) as hooks, stack.client() as client:
        async with endpoint() as ep:
            adapter_id, _ = await create(client, egress_item(ep.url, session_id))
            await hooks.wait_for(1, 10, adapter_id)
            (conn,) = await ep.wait_connections(1)
            # Media flowing before the endpoint goes, so the final counters have some.
            await asyncio.wait_for(conn.got_message.wait(), 10)
        # The endpoint's server is gone: re-dials fail until the window runs out.
        await hooks.wait_for(3, WINDOW_S + 15, adapter_id)
        view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
    await sessions.close()
    events = hooks.events(adapter_id)
    assert [e["type"] for e in events] == [
        "adapter.active",
        "adapter.reconnecting",
        "adapter.closed",
    ]
    assert [e["sequence"] for e in events] == [1, 2, 3]
    assert events[0]["adapter"]["state"] == "active"
    closed = events[-1]
    (closed_delivery,) = [d for d in hooks.deliveries if d.event["id"] == closed["id"]]
    assert closed["adapter"]["closeReason"] == "endpoint_unavailable"
    assert closed["adapter"] == view  # the record as GET shows it, final counters included
    assert closed["adapter"]["counters"]["packets"] > 0
    assert closed["appId"] == APP and closed["id"] == f"{adapter_id}-3"
    assert closed["createdAt"].endswith("Z")
    verify_webhook = python_verifier("verify_webhook")
    for delivery in hooks.deliveries:  # signed; the SDK's reader checks the spec's formula
        read_webhook(delivery.body, delivery.headers, SIGNING)
        assert delivery.headers["content-type"] == "application/json"
        headers = Headers(delivery.headers)  # case-insensitive, as servers give them
        assert verify_webhook(headers, delivery.body, SIGNING)
        assert not verify_webhook(headers, delivery.body + b" ", SIGNING)
        stale = time.time() + 301
        assert not verify_webhook(headers, delivery.body, SIGNING, now=stale)
    if not has_node():
        pytest.skip("no node: the README's JavaScript verifier is not run")
    call = "verifyWebhook(request, v.secret, v.now)"
    body, headers = closed_delivery.body.decode(), closed_delivery.headers
    assert node_verifies(call, headers, SIGNING, body=body, now=time.time())
    assert not node_verifies(call, headers, SIGNING, body=body + " ", now=time.time())
    assert not node_verifies(call, headers, SIGNING, body=body, now=time.time() + 301)


@hooked
async def test_a_failing_receiver_gets_the_event_again_with_backoff(stack: Stack) -> None:
    async with receiver(HOOK_PORT, statuses=[500, 500]) as hooks, stack.client() as client:
        async with endpoint() as ep:
            adapter_id, _ = await create(client, {**_ingest(ep.url)})
            await hooks.wait_deliveries(3, 15)
            await close(client, adapter_id)
        await hooks.wait_for(2, 15, adapter_id)
        metrics = (await httpx.AsyncClient().get(f"{stack.base_url}/metrics")).text
    active = [d for d in hooks.deliveries if d.event["type"] == "adapter.active"]
    assert len(active) == 3, [d.event["type"] for d in hooks.deliveries]
    assert len({d.event["id"] for d in active}) == 1
    assert len({d.body for d in active}) == 1  # the same bytes every time
    gaps = [b.at - a.at for a, b in itertools.pairwise(active)]
    print(f"attempts of one event {[round(g, 2) for g in gaps]} s apart")
    assert gaps[0] >= 1.0 and gaps[1] >= 2.0, gaps  # backoff 1 s, then 2 s
    assert gaps[1] > gaps[0]
    for delivery in active:  # each attempt signed afresh
        read_webhook(delivery.body, delivery.headers, SIGNING)
    assert 'sluice_webhook_deliveries_total{outcome="retried"} 2.0' in metrics
    assert 'sluice_webhook_deliveries_total{outcome="delivered"}' in metrics


def _ingest(url: str) -> dict[str, str]:
    return {"location": "local", "trackName": "tts", "endpoint": url, "inputCodec": "pcm"}


async def _create_and_close(stack: Stack, rounds: int) -> tuple[list[float], list[float]]:
    creates, closes = [], []
    async with stack.client() as client, endpoint() as ep:
        for _ in range(rounds):
            adapter_id, took = await create(client, _ingest(ep.url))
            creates.append(took)
            closes.append(await close(client, adapter_id))
    return creates, closes


@hooked
async def test_a_dead_webhook_delays_no_create_or_close(stack: Stack) -> None:
    rounds = 6
    async with receiver(HOOK_PORT) as hooks:
        up_creates, up_closes = await _create_and_close(stack, rounds)
        await hooks.wait_for(2 * rounds, 15)
    # Accepts connections and never answers: each attempt waits out its 5 s.
    async with receiver(HOOK_PORT, silent=True) as dead:
        down_creates, down_closes = await _create_and_close(stack, rounds)
        await dead.wait_for(2, 10)
        ls = await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "sluice"), "webhooks", "ls", "--json"],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    up, down = statistics.median(up_creates), statistics.median(down_creates)
    print(
        f"create median {up * 1000:.0f} ms with the webhook up, {down * 1000:.0f} ms with it "
        f"dead; close median {statistics.median(up_closes) * 1000:.0f} / "
        f"{statistics.median(down_closes) * 1000:.0f} ms"
    )
    # A create that waited on a delivery would take the 5 s answer timeout at least.
    assert max(down_creates) < 3.0 and max(down_closes) < 2.0, (down_creates, down_closes)
    listing = json.loads(ls.stdout)
    pending = [d for d in listing["deliveries"] if d["state"] != "failed"]
    assert len(pending) >= 2 * rounds - 2, listing  # the dead receiver's events wait
    assert {d["type"] for d in pending} <= {"adapter.active", "adapter.closed"}
    assert all(d["appId"] == APP for d in pending)


@hooked
async def test_apps_without_a_webhook_emit_nothing(stack: Stack) -> None:
    async with receiver(HOOK_PORT) as hooks, stack.client(secret="secret2", app="app2") as client:
        async with endpoint() as ep:
            adapter_id, _ = await create(client, _ingest(ep.url))
            await close(client, adapter_id)
        await asyncio.sleep(1.5)
    assert hooks.deliveries == []
    conn = redis.Redis.from_url(stack.redis_url)
    assert conn.xlen("sluice:webhook_outbox") == 0
