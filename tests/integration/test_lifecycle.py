"""Adapters end to end: real API, real worker processes, real Redis, real endpoint."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator

import httpx
import pytest
import redis
from rq import Queue

from sluice.wire.packet import encode
from tests.conftest import free_port
from tests.integration.helpers import (
    BIN,
    Stack,
    endpoint,
    ingest_item,
    silent_tcp_server,
    wait_state,
    wait_until,
)

pytestmark = pytest.mark.integration


async def wait_counters(
    stack: Stack, adapter_id: str, done: Callable[[dict[str, int]], bool], timeout_s: float = 10
) -> dict[str, int]:
    """The adapter's counters once `done` holds (they arrive with its heartbeats)."""
    async with stack.client() as client:
        deadline = time.monotonic() + timeout_s
        while True:
            counters = (await client.get(f"/adapters/websocket/{adapter_id}")).json()["counters"]
            if done(counters) or time.monotonic() > deadline:
                return dict(counters)
            await asyncio.sleep(0.05)


async def test_create_get_close_round_trip(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as client:
        resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        assert resp.status_code == 200, resp.text
        track = resp.json()["tracks"][0]
        adapter_id = track["adapterId"]
        assert track["trackName"] == "tts"
        assert track["endpoint"] == ep.url  # echoed verbatim, query string included
        assert track["sessionId"]
        (conn,) = await ep.wait_connections(1)
        assert conn.path == "/ingest?token=s3cret"

        view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
        assert view["state"] == "active"
        assert view["direction"] == "ingest"
        assert view["endpoint"] == ep.url.split("?")[0]  # the token never shows
        assert view["codec"] == "pcm"

        started = time.monotonic()
        resp = await client.post(
            "/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]}
        )
        assert resp.status_code == 200, resp.text
        assert resp.json()["tracks"] == [
            {"adapterId": adapter_id, "status": "closed", "bytesProcessed": 0}
        ]
        await asyncio.wait_for(conn.closed.wait(), 1.0)
        assert time.monotonic() - started < 1.0
        assert conn.close_code == 1000

        again = await client.post(
            "/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]}
        )
        assert again.status_code == 200
        assert again.json()["tracks"][0]["status"] == "closed"

        view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
        assert view["state"] == "closed"
        assert view["closeReason"] == "api_close"
        assert view["closedAt"]

        unknown = await client.post(
            "/adapters/websocket/close", json={"tracks": [{"adapterId": "never-created"}]}
        )
        assert unknown.status_code == 503
        assert unknown.json()["errorCode"] == "adapter_not_found"
        assert unknown.json()["tracks"][0]["errorCode"] == "adapter_not_found"
        missing = await client.get("/adapters/websocket/never-created")
        assert missing.status_code == 404
        assert missing.json()["errorCode"] == "adapter_not_found"


async def test_ingest_counts_packets_and_skips_text(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as client:

        async def push(ws):  # type: ignore[no-untyped-def]
            for _ in range(3):
                await ws.send(b"\x2a\x03abc")  # Packet{payload: "abc"}
            await ws.send("not a packet")
            await ws.send(b"\xff\xff\xff")  # not a protobuf Packet either

        ep.on_connect = push
        resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        adapter_id = resp.json()["tracks"][0]["adapterId"]
        await ep.wait_connections(1)

        def all_five(counters: dict[str, int]) -> bool:  # reported by a heartbeat
            return counters.get("packets", 0) + counters.get("skipped", 0) == 5

        await wait_counters(stack, adapter_id, all_five)
        await client.post("/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]})
        view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
        assert view["counters"]["packets"] == 3
        assert view["counters"]["bytes"] == 15
        assert view["counters"]["skipped"] == 2


async def test_oversized_ingest_message_closes_1009(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as client:

        async def push(ws):  # type: ignore[no-untyped-def]
            at_limit = encode(0, 0, bytes(32_764))
            assert len(at_limit) == 32_768  # the limit itself is allowed
            await ws.send(at_limit)
            await ws.send(encode(0, 0, bytes(32_765)))

        ep.on_connect = push
        resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        adapter_id = resp.json()["tracks"][0]["adapterId"]
        (conn,) = await ep.wait_connections(1)
        await asyncio.wait_for(conn.closed.wait(), 3)
        assert conn.close_code == 1009
        view = await wait_state(stack, adapter_id, "closed", 3)
        assert view["closeReason"] == "message_too_big"
        assert view["counters"]["packets"] == 1


@pytest.mark.parametrize("status", [403, 302, 500])
async def test_handshake_refused(stack: Stack, status: int) -> None:
    async with endpoint() as ep, stack.client() as client:
        ep.reject_status = status
        resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        assert resp.status_code == 503, resp.text
        body = resp.json()
        assert body["errorCode"] == "websocket_handshake_failed"
        assert body["tracks"][0]["errorCode"] == "websocket_handshake_failed"
        assert "adapterId" not in body["tracks"][0]
        assert "s3cret" not in resp.text  # error texts never show the query string


async def test_connection_refused_and_timeout(stack: Stack) -> None:
    closed_port_url = "ws://127.0.0.1:9/"
    async with silent_tcp_server() as silent_url, stack.client() as client:
        started = time.monotonic()
        resp = await client.post(
            "/adapters/websocket/new",
            json={"tracks": [ingest_item(closed_port_url, "a"), ingest_item(silent_url, "b")]},
        )
        elapsed = time.monotonic() - started
        assert resp.status_code == 503
        codes = [t["errorCode"] for t in resp.json()["tracks"]]
        assert codes == ["websocket_handshake_failed", "websocket_connection_timeout"]
        assert resp.json()["errorCode"] == "websocket_handshake_failed"  # the first failure
        assert 1.4 < elapsed < 1.5 + 2.0  # SLUICE_CONNECT_TIMEOUT_S=1.5 in tests


async def test_partial_success(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as client:
        resp = await client.post(
            "/adapters/websocket/new",
            json={"tracks": [ingest_item("ws://127.0.0.1:9/", "bad"), ingest_item(ep.url, "good")]},
        )
        assert resp.status_code == 200
        bad, good = resp.json()["tracks"]
        assert bad["errorCode"] == "websocket_handshake_failed" and bad["trackName"] == "bad"
        assert good["adapterId"] and good["trackName"] == "good"
        assert "errorCode" not in resp.json()


@pytest.mark.workers(2)
async def test_no_capacity_leaves_nothing_behind(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as client:
        for name in ("one", "two"):
            resp = await client.post(
                "/adapters/websocket/new", json={"tracks": [ingest_item(ep.url, name)]}
            )
            assert resp.status_code == 200
        started = time.monotonic()
        resp = await client.post(
            "/adapters/websocket/new", json={"tracks": [ingest_item(ep.url, "three")]}
        )
        elapsed = time.monotonic() - started
        assert resp.status_code == 503
        assert resp.json()["errorCode"] == "no_capacity"
        assert int(resp.headers["Retry-After"]) >= 1  # capacity may come back
        assert elapsed < 1.5 + 1.0  # within a second beyond the connect timeout
        conn = redis.Redis.from_url(stack.redis_url, decode_responses=True)
        states = [
            conn.hget(k, "state") for k in conn.scan_iter("sluice:adapter:*") if k.count(":") == 2
        ]
        assert states == ["active", "active"]  # no record left in `connecting`
        assert Queue("sluice-adapters", connection=redis.Redis.from_url(stack.redis_url)).count == 0
        assert len(ep.connections) == 2


@pytest.mark.workers(3)
async def test_close_is_fast_with_every_worker_busy(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as client:
        ids = []
        for name in ("a", "b", "c"):
            resp = await client.post(
                "/adapters/websocket/new", json={"tracks": [ingest_item(ep.url, name)]}
            )
            ids.append(resp.json()["tracks"][0]["adapterId"])
        # Every process is busy and a create is waiting in line for one.
        waiting = asyncio.create_task(
            client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url, "d")]})
        )
        queue = Queue("sluice-adapters", connection=redis.Redis.from_url(stack.redis_url))
        await asyncio.to_thread(wait_until, lambda: queue.count == 1, 5, "the create in line")
        timings = []
        for adapter_id in ids:
            started = time.monotonic()
            resp = await client.post(
                "/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]}
            )
            timings.append(time.monotonic() - started)
            assert resp.status_code == 200
        print(f"close latency with every worker busy: {[round(t * 1000) for t in timings]} ms")
        assert max(timings) < 1.0
        await waiting


@pytest.mark.workers(2)
async def test_killed_pipeline_is_worker_lost_and_its_slot_freed(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as client:
        resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        adapter_id = resp.json()["tracks"][0]["adapterId"]
        conn = redis.Redis.from_url(stack.redis_url, decode_responses=True)
        pid = int(conn.hget(f"sluice:adapter:{adapter_id}", "worker").rsplit(":", 1)[1])
        os.kill(pid, signal.SIGKILL)
        started = time.monotonic()
        view = await wait_state(stack, adapter_id, "closed", 6)
        assert view["state"] == "closed"
        assert view["closeReason"] == "worker_lost"
        assert time.monotonic() - started < 5
        # Both processes can take adapters again.
        for name in ("x", "y"):
            resp = await client.post(
                "/adapters/websocket/new", json={"tracks": [ingest_item(ep.url, name)]}
            )
            assert resp.status_code == 200, resp.text


@pytest.mark.workers(2)
async def test_sigterm_drains_running_adapters(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as client:
        ids = []
        for name in ("a", "b"):
            resp = await client.post(
                "/adapters/websocket/new", json={"tracks": [ingest_item(ep.url, name)]}
            )
            ids.append(resp.json()["tracks"][0]["adapterId"])
        await ep.wait_connections(2)
        stack.worker.send_signal(signal.SIGTERM)
        for conn in ep.connections:
            await asyncio.wait_for(conn.closed.wait(), 5)
            assert conn.close_code == 1000
        await asyncio.to_thread(stack.worker.wait, 10)
        for adapter_id in ids:
            view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
            assert (view["state"], view["closeReason"]) == ("closed", "shutdown")


@pytest.fixture
def second_api(stack: Stack) -> Iterator[Stack]:
    """Another API replica on the same Redis, workers and SFU."""
    port = free_port()
    replica = subprocess.Popen(
        [str(BIN / "sluice"), "api", "--port", str(port)],
        env=stack.env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    other = Stack(
        f"http://127.0.0.1:{port}",
        stack.env,
        replica,
        stack.worker,
        stack.sfu,
        stack.redis_url,
        stack.sfu_url,
    )
    try:
        wait_until(lambda: _healthy(other.base_url), 20, "the second API replica")
        yield other
    finally:
        replica.terminate()
        replica.wait(timeout=10)


async def test_concurrent_closes_from_two_replicas(stack: Stack, second_api: Stack) -> None:
    async with endpoint() as ep, stack.client() as one, second_api.client() as two:
        resp = await one.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        adapter_id = resp.json()["tracks"][0]["adapterId"]
        (conn,) = await ep.wait_connections(1)
        body = {"tracks": [{"adapterId": adapter_id}]}
        answers = await asyncio.gather(
            *(client.post("/adapters/websocket/close", json=body) for client in (one, two) * 2)
        )
        assert [a.status_code for a in answers] == [200] * 4
        assert {a.json()["tracks"][0]["status"] for a in answers} == {"closed"}
        await asyncio.wait_for(conn.closed.wait(), 1.0)
        assert conn.close_code == 1000
        assert len(ep.connections) == 1


def _healthy(base_url: str) -> bool:
    try:
        return httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.workers(2, allow_private_endpoints=0)
async def test_private_endpoint_refused_by_default(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as client:
        for url in (ep.url, ep.url.replace("127.0.0.1", "localhost")):
            resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(url)]})
            assert resp.status_code == 503, resp.text
            assert resp.json()["errorCode"] == "websocket_endpoint_not_allowed"
            assert "s3cret" not in resp.text
        assert ep.attempts == []  # refused before any connection was made


@pytest.mark.workers(3, app_max_adapters=1, app_creates_per_s=3)
async def test_per_app_quotas(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as client, stack.client("secret2", "app2") as other:
        first = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        assert first.status_code == 200
        over = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        assert (over.status_code, over.json()["errorCode"]) == (429, "too_many_adapters")
        assert int(over.headers["Retry-After"]) >= 1
        # Another app has its own quota.
        theirs = await other.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        assert theirs.status_code == 200, theirs.text
        # Ten quick requests: whatever second boundary they straddle, at most 2 x 3 of
        # them fit under a rate of 3 per second.
        codes = []
        for _ in range(10):
            resp = await client.post(
                "/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]}
            )
            codes.append((resp.status_code, resp.json().get("errorCode")))
            if codes[-1] == (429, "rate_limited"):
                assert resp.headers["Retry-After"] == "1"  # the limit counts per second
        assert codes.count((429, "rate_limited")) >= 4
        await asyncio.sleep(1.1)
        adapter_id = first.json()["tracks"][0]["adapterId"]
        await client.post("/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]})
        again = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        assert again.status_code == 200, again.text  # a closed adapter frees its slot


async def test_an_app_cannot_see_or_close_another_apps_adapter(stack: Stack) -> None:
    async with endpoint() as ep, stack.client() as mine, stack.client("secret2", "app2") as theirs:
        resp = await mine.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        adapter_id = resp.json()["tracks"][0]["adapterId"]
        looked = await theirs.get(f"/adapters/websocket/{adapter_id}")
        assert (looked.status_code, looked.json()["errorCode"]) == (404, "adapter_not_found")
        closed = await theirs.post(
            "/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]}
        )
        assert (closed.status_code, closed.json()["errorCode"]) == (503, "adapter_not_found")
        # Their secret does not open my app either.
        async with stack.client("secret2") as wrong:
            assert (await wrong.get(f"/adapters/websocket/{adapter_id}")).status_code == 401
        assert (await mine.get(f"/adapters/websocket/{adapter_id}")).json()["state"] == "active"
