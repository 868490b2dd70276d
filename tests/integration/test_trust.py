"""Endpoint trust (E6) against real processes: headers on every dial, never shown; signed
dials checked with the spec's formula and with the README's verifiers."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import signal
import subprocess
from pathlib import Path

import httpx
import pytest
import redis
from cryptography.fernet import Fernet
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from tests.integration.audio import StereoToneTrack
from tests.integration.helpers import (
    BIN,
    Endpoint,
    Stack,
    egress_item,
    endpoint,
    ingest_item,
)
from tests.integration.readme_verifiers import has_node, node_verifies, python_verifier

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "tok-4c1e-SECRET-9f3a"  # the endpoint's key: must never show anywhere
API_KEY = "key-77d2-SECRET-b0e5"
HEADERS = {"Authorization": f"Token {TOKEN}", "X-Api-Key": API_KEY}
SIGNING = "sign-3e8a-SECRET-c41d"
HANDSHAKE = {"host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version"}


# A stack of the module's own: a key for header values, a signing secret for app2 only.
trusted = pytest.mark.workers(
    2, secrets_key=Fernet.generate_key().decode(), signing_secrets=f"app2:{SIGNING}"
)


def record_handshakes(ep: Endpoint) -> list[Headers]:
    """Every accepted dial's request headers, in order."""
    seen: list[Headers] = []

    async def on_connect(ws: ServerConnection) -> None:
        assert ws.request is not None
        seen.append(ws.request.headers)

    ep.on_connect = on_connect
    return seen


def redis_dump(url: str) -> bytes:
    """Every key and value in Redis, as bytes, to search for a secret."""
    conn = redis.Redis.from_url(url)
    out = bytearray()
    for key in conn.scan_iter(count=1000):
        out += key
        kind = conn.type(key)
        if kind == b"string":
            out += conn.get(key) or b""
        elif kind == b"hash":
            for field, value in conn.hgetall(key).items():
                out += field + value
        elif kind == b"list":
            out += b"".join(conn.lrange(key, 0, -1))
        elif kind in (b"set", b"zset"):
            out += b"".join(conn.zrange(key, 0, -1) if kind == b"zset" else conn.smembers(key))
        elif kind == b"stream":
            for _id, fields in conn.xrange(key):
                out += b"".join(k + v for k, v in fields.items())
    return bytes(out)


def logs_of(folder: Path) -> list[tuple[str, bytes]]:
    """Every log line the stack's processes wrote during the test (name, contents)."""
    return [(log.name, log.read_bytes()) for log in sorted(folder.glob("*.log"))]


def assert_secret_free(where: str, text: str | bytes) -> None:
    data = text.encode() if isinstance(text, str) else text
    for secret in (TOKEN, API_KEY, SIGNING):
        assert secret.encode() not in data, f"{secret} found in {where}"


@trusted
async def test_headers_go_on_every_dial_and_nowhere_else(stack: Stack, tmp_path: Path) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 660), "mic")
    conn = redis.Redis.from_url(stack.redis_url, decode_responses=True)
    async with endpoint() as ep, stack.client() as client:
        dials = record_handshakes(ep)
        item = {**egress_item(ep.url, session_id), "headers": HEADERS}
        created = await client.post("/adapters/websocket/new", json={"tracks": [item]})
        assert created.status_code == 200, created.text
        adapter_id = created.json()["tracks"][0]["adapterId"]
        (first,) = await ep.wait_connections(1)
        await asyncio.sleep(0.5)
        assert first.ws is not None
        await first.ws.close(1011)  # not 1000: the adapter re-dials
        await ep.wait_connections(2)
        await asyncio.sleep(1.5)  # a heartbeat saves the stream's position
        # Another process resumes it and dials again.
        os.kill(stack.pipeline_pid(adapter_id), signal.SIGKILL)
        await ep.wait_connections(3, timeout_s=12)
        view = await client.get(f"/adapters/websocket/{adapter_id}")
        sealed = conn.get(f"sluice:adapter:{adapter_id}:headers")
        refused = {**ingest_item("ws://127.0.0.1:1/nothing-listens"), "headers": HEADERS}
        failed = await client.post("/adapters/websocket/new", json={"tracks": [refused]})
        health = httpx.AsyncClient()
        metrics = [
            (await health.get(f"{stack.base_url}/metrics")).text,
            (await health.get(f"{stack.worker_health_url}/metrics")).text,
        ]
        await health.aclose()
        show = await asyncio.to_thread(
            subprocess.run,
            [str(BIN / "sluice"), "adapters", "show", adapter_id, "--json"],
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=30,
        )
        dump = redis_dump(stack.redis_url)
        await client.post("/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]})
    await sessions.close()
    assert len(dials) == 3, "the first dial, a reconnect and a resume after SIGKILL"
    for dial in dials:
        assert dial["Authorization"] == f"Token {TOKEN}" and dial["X-Api-Key"] == API_KEY
        assert dial["Sluice-Adapter-Id"] == adapter_id
        assert "Sluice-Signature" not in dial  # app1 has no signing secret
    assert view.json()["settings"]["headerNames"] == ["Authorization", "X-Api-Key"]
    assert failed.json()["tracks"][0]["errorCode"] == "websocket_handshake_failed"
    assert sealed is not None  # kept apart from the record, sealed
    logs = logs_of(tmp_path)
    assert {"api.log", "worker.log"} <= {name for name, text in logs if text}  # searched
    assert conn.get(f"sluice:adapter:{adapter_id}:headers") is None  # gone with the adapter
    for where, text in (
        ("the create answer", created.text),
        ("the record", view.text),
        ("a failed create's answer", failed.text),
        ("the API's /metrics", metrics[0]),
        ("the worker host's /metrics", metrics[1]),
        ("sluice adapters show", show.stdout + show.stderr),
        ("Redis", dump),
        *logs,
    ):
        assert_secret_free(where, text)


@trusted
async def test_an_endpoint_that_wants_a_token_gets_it_from_headers(stack: Stack) -> None:
    async def require_token(ws: ServerConnection, request: Request) -> Response | None:
        given = request.headers.get("Authorization", "").encode()
        if hmac.compare_digest(given, f"Token {TOKEN}".encode()):
            return None
        return ws.respond(401, "a token is required\n")

    async with (
        serve(lambda ws: ws.wait_closed(), "127.0.0.1", 0, process_request=require_token) as srv,
        stack.client() as client,
    ):
        url = f"ws://127.0.0.1:{srv.sockets[0].getsockname()[1]}/tts"
        without = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(url)]})
        with_token = await client.post(
            "/adapters/websocket/new",
            json={"tracks": [{**ingest_item(url), "headers": {"Authorization": f"Token {TOKEN}"}}]},
        )
        assert with_token.status_code == 200, with_token.text
        adapter_id = with_token.json()["tracks"][0]["adapterId"]
        state = (await client.get(f"/adapters/websocket/{adapter_id}")).json()["state"]
        await client.post("/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]})
    assert without.json()["tracks"][0]["errorCode"] == "websocket_handshake_failed"
    assert state == "active"


def spec_signature(timestamp: str, adapter_id: str, endpoint_url: str) -> str:
    message = f"{timestamp}.{adapter_id}.{endpoint_url}".encode()
    return "v1=" + hmac.new(SIGNING.encode(), message, hashlib.sha256).hexdigest()


@trusted
async def test_signed_dials_verify_and_tampering_does_not(stack: Stack) -> None:
    async with endpoint() as ep:
        dials = record_handshakes(ep)
        plain_url = ep.url  # app1 (no signing secret), Cloudflare's fields only
        async with stack.client() as app1:
            plain = await app1.post(
                "/adapters/websocket/new", json={"tracks": [ingest_item(plain_url)]}
            )
        signed_url = ep.url.replace("/ingest?", "/ingest/%2Fsigned?x=1&")
        async with stack.client(secret="secret2", app="app2") as app2:
            signed = await app2.post(
                "/adapters/websocket/new", json={"tracks": [ingest_item(signed_url)]}
            )
            ids = [r.json()["tracks"][0]["adapterId"] for r in (plain, signed)]
            await app2.post("/adapters/websocket/close", json={"tracks": [{"adapterId": ids[1]}]})
        async with stack.client() as app1:
            await app1.post("/adapters/websocket/close", json={"tracks": [{"adapterId": ids[0]}]})
    plain_dial, signed_dial = dials
    # The compatibility rule: nothing new on the wire for a Cloudflare-only item.
    assert {name.lower() for name in plain_dial} == HANDSHAKE | {"user-agent"}
    timestamp = signed_dial["Sluice-Timestamp"]
    assert signed_dial["Sluice-Adapter-Id"] == ids[1]
    assert signed_dial["Sluice-Signature"] == spec_signature(timestamp, ids[1], signed_url)
    verify_dial = python_verifier("verify_dial")
    now = float(timestamp)
    assert verify_dial(signed_dial, signed_url, SIGNING, now=now + 2)
    tampered = Headers(signed_dial)
    signature = tampered.pop("Sluice-Signature")
    tampered["Sluice-Signature"] = signature[:-1] + ("0" if signature[-1] != "0" else "1")
    assert not verify_dial(tampered, signed_url, SIGNING, now=now)
    assert not verify_dial(signed_dial, signed_url, SIGNING, now=now + 301)  # too old
    assert not verify_dial(signed_dial, plain_url, SIGNING, now=now)  # another endpoint
    if not has_node():
        pytest.skip("no node: the README's JavaScript verifier is not run")
    call = "verifyDial(request, v.url, v.secret, v.now)"
    assert node_verifies(call, signed_dial, SIGNING, url=signed_url, now=now + 2)
    assert not node_verifies(call, tampered, SIGNING, url=signed_url, now=now)
    assert not node_verifies(call, signed_dial, SIGNING, url=signed_url, now=now + 301)
