"""Real processes and a real WebSocket endpoint for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import subprocess
import sys
import termios
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
class SfuNode:
    """One `sluice sfu` node process on its own port; it can be killed and started again."""

    port: int
    env: dict[str, str]
    log: Path
    proc: subprocess.Popen[bytes] = field(init=False)

    def __post_init__(self) -> None:
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(BIN / "sluice"), "sfu", "--nodes", "1", "--port", str(self.port)],
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=open(self.log, "ab"),  # noqa: SIM115
        )

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def sessions(self, secret: str = SECRET) -> Any:
        """A sessions API client straight at this node (its new sessions live here)."""
        return _sessions_client(self.url, secret)


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
    # Every SFU node, the first being `sfu` at `sfu_url` (empty: `sfu` alone).
    nodes: list[SfuNode] = field(default_factory=list)

    def client(self, secret: str = SECRET, app: str = APP) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"{self.base_url}/v1/apps/{app}",
            headers={"Authorization": f"Bearer {secret}"},
            timeout=30,
        )

    def sessions(self, secret: str = SECRET) -> Any:
        """A sessions API client for test publishers/subscribers: straight at the SFU,
        or with several nodes through the API, whose placement picks their nodes."""
        return _sessions_client(self.base_url if len(self.nodes) > 1 else self.sfu_url, secret)

    def pipeline_pid(self, adapter_id: str) -> int:
        """The pid of the process running the adapter's pipeline (`host:pid` in Redis)."""
        conn = redis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            worker = conn.hget(f"sluice:adapter:{adapter_id}", "worker")
        finally:
            conn.close()
        if not worker:
            raise AssertionError(f"adapter {adapter_id} names no pipeline process")
        return int(str(worker).rsplit(":", 1)[1])

    def stop(self) -> None:
        procs = (self.worker, self.api, self.sfu, *(node.proc for node in self.nodes[1:]))
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _sessions_client(sfu_url: str, secret: str) -> Any:
    from sluice.config import Settings
    from sluice.media.calls_client import SessionsClient
    from sluice.media.ice import rtc_configuration

    settings = Settings(apps=f"{APP}:{SECRET}", ice_loopback=True)
    return SessionsClient(
        f"{sfu_url}/v1/apps/{APP}", secret, configuration=rtc_configuration(settings)
    )


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
            # One node per `sluice sfu` (not one per core): a stack's nodes are its own.
            "SLUICE_SFU_NODES": "1",
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


def start_stack(
    redis_url: str,
    processes: int,
    log_dir: Path,
    *,
    sfu_nodes: int | None = None,
    **overrides: Any,
) -> Stack:
    """Starts the API, a worker pool of `processes` and the SFU node(s).

    Args:
        sfu_nodes: SFU node processes, each on its own port (default: the environment's
            `SLUICE_TEST_SFU_NODES`, else 1), logging to `sfu.log`, `sfu-2.log`, ...
    """
    if sfu_nodes is None:
        sfu_nodes = int(os.environ.get("SLUICE_TEST_SFU_NODES") or 1)
    port, sfu_port = free_port(), free_port()
    overrides.setdefault("worker_health_port", free_port())
    sfu_url = f"http://127.0.0.1:{sfu_port}"
    env = stack_env(redis_url, sfu_url=sfu_url, **overrides)
    nodes = [
        SfuNode(node_port, env, log_dir / ("sfu.log" if i == 0 else f"sfu-{i + 1}.log"))
        for i, node_port in enumerate([sfu_port, *(free_port() for _ in range(sfu_nodes - 1))])
    ]
    sfu = nodes[0].proc
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
    stack = Stack(
        f"http://127.0.0.1:{port}", env, api, worker, sfu, redis_url, sfu_url, health_url, nodes
    )

    def up(url: str) -> Callable[[], bool]:
        return lambda: answers_healthz(url)

    conn = redis.Redis.from_url(redis_url)
    queue = Queue(env.get("SLUICE_QUEUE_NAME", "sluice-adapters"), connection=conn)
    try:
        wait_until(up(stack.base_url), 60, "the API")
        for node in nodes:
            wait_until(up(node.url), 60, f"the SFU node on port {node.port}")
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


def spawn(command: str, port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`sluice <command> --port <port>` as a real process, its log appended to `log`."""
    return subprocess.Popen(
        [str(BIN / "sluice"), command, "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=open(log, "ab"),
    )


async def wait_state(stack: Stack, adapter_id: str, state: str, timeout_s: float) -> dict[str, Any]:
    """The adapter's view once it is in `state`, or as it is after `timeout_s`."""
    async with stack.client() as client:
        deadline = time.monotonic() + timeout_s
        while True:
            body = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
            if body.get("state") == state or time.monotonic() > deadline:
                return dict(body)
            await asyncio.sleep(0.05)


async def drop_connection(ws: ServerConnection) -> None:
    """Drops an endpoint's connection (no close frame) once it has read what reached it.

    Bytes the kernel accepted from the pipeline but the endpoint never read die with any
    TCP connection, and the pipeline cannot know of them (a reconnect replays what it had
    not written). Aborting with such bytes queued would make a test that counts every
    Packet depend on how late this event loop happened to be.
    """
    sock = ws.transport.get_extra_info("socket")

    def queued() -> int:
        return int(struct.unpack("i", fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0" * 4))[0])

    async def until(done: Callable[[], bool]) -> None:
        for _ in range(200):  # at most ~0.2 s each: a best effort, never a failure
            if done():
                return
            await asyncio.sleep(0.001)  # this loop reads what came in meanwhile

    # Just after a Packet came in, and once it is read: the pipeline's next write is a
    # frame away, time for it to see the reset first (what it writes after is kept for
    # the next connection; what it wrote in the instant before would be lost).
    await until(lambda: queued() > 0)
    await until(lambda: queued() == 0)
    ws.transport.abort()
