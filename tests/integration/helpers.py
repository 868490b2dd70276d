"""Real processes and a real WebSocket endpoint for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from rq import Queue, Worker
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from sluice.cli.devserver import answers_healthz, free_port

APP, SECRET = "app1", "secret1"
BIN = Path(sys.executable).parent


@dataclass
class Stack:
    """`sluice api` + `sluice worker` as real processes against the test's Redis."""

    base_url: str
    env: dict[str, str]
    api: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]
    sfu: subprocess.Popen[bytes]
    redis_url: str
    sfu_url: str
    worker_health_url: str = ""

    def client(self, secret: str = SECRET, app: str = APP) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"{self.base_url}/v1/apps/{app}",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )

    def sessions(self, secret: str = SECRET) -> Any:
        """A sessions API client straight at the SFU, for test publishers/subscribers."""
        from sluice.config import Settings
        from sluice.media.calls_client import SessionsClient
        from sluice.media.ice import rtc_configuration

        settings = Settings(apps=f"{APP}:{SECRET}", ice_loopback=True)
        return SessionsClient(
            f"{self.sfu_url}/v1/apps/{APP}", secret, configuration=rtc_configuration(settings)
        )

    def stop(self) -> None:
        procs = (self.worker, self.api, self.sfu)
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def stack_env(redis_url: str, **overrides: Any) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "SLUICE_APPS": f"{APP}:{SECRET},app2:secret2",
            "SLUICE_REDIS_URL": redis_url,
            "SLUICE_LOG_FORMAT": "json",
            "SLUICE_ALLOW_PRIVATE_ENDPOINTS": "1",
            "SLUICE_ICE_LOOPBACK": "1",
            "SLUICE_CONNECT_TIMEOUT_S": "1.5",
        }
    )
    env.update({f"SLUICE_{k.upper()}": str(v) for k, v in overrides.items()})
    return env


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def start_stack(redis_url: str, processes: int, log_dir: Path, **overrides: Any) -> Stack:
    port, sfu_port = free_port(), free_port()
    overrides.setdefault("worker_health_port", free_port())
    sfu_url = f"http://127.0.0.1:{sfu_port}"
    env = stack_env(redis_url, sfu_url=sfu_url, **overrides)
    sfu = subprocess.Popen(
        [str(BIN / "sluice"), "sfu", "--port", str(sfu_port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log_dir / "sfu.log", "ab"),  # noqa: SIM115
    )
    api = subprocess.Popen(
        [str(BIN / "sluice"), "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log_dir / "api.log", "ab"),  # noqa: SIM115
    )
    worker = subprocess.Popen(
        [str(BIN / "sluice"), "worker", "--processes", str(processes)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log_dir / "worker.log", "ab"),  # noqa: SIM115
    )
    health_url = f"http://127.0.0.1:{overrides['worker_health_port']}"
    stack = Stack(f"http://127.0.0.1:{port}", env, api, worker, sfu, redis_url, sfu_url, health_url)

    def up(url: str) -> Callable[[], bool]:
        return lambda: answers_healthz(url)

    conn = redis.Redis.from_url(redis_url)
    queue = Queue(env.get("SLUICE_QUEUE_NAME", "sluice-adapters"), connection=conn)
    try:
        wait_until(up(stack.base_url), 60, "the API")
        wait_until(up(sfu_url), 60, "the SFU")
        wait_until(lambda: len(Worker.all(queue=queue)) >= processes, 60, "the worker pool")
    except AssertionError:
        stack.stop()
        raise
    return stack


@dataclass
class Connection:
    path: str
    messages: list[bytes | str] = field(default_factory=list)
    close_code: int | None = None
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    got_message: asyncio.Event = field(default_factory=asyncio.Event)
    ws: ServerConnection | None = None


class Endpoint:
    """A real WebSocket server standing in for a user's endpoint."""

    def __init__(self) -> None:
        self.connections: list[Connection] = []
        self.connected = asyncio.Event()
        self.server: Server | None = None
        self.reject_status: int | None = None
        self.on_connect: Callable[[ServerConnection], Any] | None = None
        self.attempts: list[float] = []  # monotonic time of every opening handshake

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/ingest?token=s3cret"

    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        self.attempts.append(time.monotonic())
        if self.reject_status is None:
            return None
        response = ws.respond(self.reject_status, "refused by test\n")
        if 300 <= self.reject_status < 400:
            response.headers["Location"] = "ws://127.0.0.1:1/elsewhere"
        return response

    async def _handler(self, ws: ServerConnection) -> None:
        conn = Connection(path=ws.request.path if ws.request else "", ws=ws)
        self.connections.append(conn)
        self.connected.set()
        try:
            if self.on_connect is not None:
                await self.on_connect(ws)
            async for message in ws:
                conn.messages.append(message)
                conn.got_message.set()
        except ConnectionClosed:
            pass
        finally:
            conn.close_code = ws.close_code
            conn.closed.set()

    async def wait_connections(self, count: int, timeout_s: float = 5) -> list[Connection]:
        async with asyncio.timeout(timeout_s):
            while len(self.connections) < count:
                self.connected.clear()
                await self.connected.wait()
        return self.connections


@contextlib.asynccontextmanager
async def endpoint() -> AsyncIterator[Endpoint]:
    ep = Endpoint()
    async with serve(ep._handler, "127.0.0.1", 0, process_request=ep._process_request) as server:
        ep.server = server
        yield ep


@contextlib.asynccontextmanager
async def silent_tcp_server() -> AsyncIterator[str]:
    """Accepts TCP connections and never answers: a WebSocket handshake times out."""
    writers: list[asyncio.StreamWriter] = []

    async def hold(_: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writers.append(writer)

    server = await asyncio.start_server(hold, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"ws://127.0.0.1:{port}/"
    finally:
        for writer in writers:
            writer.close()
        server.close()


def egress_item(
    url: str, session_id: str, track: str = "mic", codec: str = "pcm"
) -> dict[str, str]:
    return {
        "location": "remote",
        "sessionId": session_id,
        "trackName": track,
        "endpoint": url,
        "outputCodec": codec,
    }


def ingest_item(url: str, track: str = "tts") -> dict[str, str]:
    return {"location": "local", "trackName": track, "endpoint": url, "inputCodec": "pcm"}
