"""Processes, endpoints and measurements shared by every benchmark.

A `Stack` is a throwaway redis-server plus real `sluice sfu`, `sluice api` and
`sluice worker` processes on 127.0.0.1, like production but on loopback. `Endpoint` is a
real WebSocket server in the bench process that calls back on every message with the
arrival time from `time.monotonic()` (the clock every benchmark uses). `/proc` readers
give CPU time and PSS of the adapter processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from sluice.cli.devserver import answers_healthz, free_port

APP, SECRET = "bench", "bench-secret"
BIN = Path(sys.executable).parent
CLK_TCK = os.sysconf("SC_CLK_TCK")


def progress(message: str) -> None:
    """One progress line on stderr (stdout keeps the tables)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


async def wait_with_progress(seconds: float, what: str, every_s: float = 10.0) -> None:
    """Sleeps `seconds`, printing how far along it is every `every_s`."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    end = start + seconds
    while (now := loop.time()) < end:
        await asyncio.sleep(min(every_s, end - now))
        if loop.time() < end:
            progress(f"{what}: {loop.time() - start:.0f}/{seconds:.0f} s")


@dataclass(frozen=True)
class WorkerHost:
    """One worker host of a stack that runs several side by side (`running_stack(hosts=)`):
    its own `SLUICE_*` settings, the virtualenv's bin directory it runs from (another
    interpreter), and where its code comes from (`code_dir`: another commit's checkout,
    put first on `PYTHONPATH`; this tree by default)."""

    settings: dict[str, str] = field(default_factory=dict)
    bin_dir: Path = BIN
    code_dir: Path | None = None


@dataclass
class Stack:
    """Redis + SFU + API + worker pool, as real processes."""

    processes: dict[str, subprocess.Popen[bytes]]
    redis_url: str
    api_url: str
    sfu_url: str
    log_dir: Path
    workers: int = 0
    sfu_urls: list[str] = field(default_factory=list)  # every SFU node, `sfu_url` first
    env: dict[str, str] = field(default_factory=dict)  # the processes' environment

    def sessions_at(self, url: str) -> Any:
        """A sessions API client straight at one SFU node, with loopback-only ICE."""
        return _sessions_client(url)

    def sfu_pids(self) -> list[int]:
        """The SFU node processes, in `sfu_urls` order."""
        return [proc.pid for name, proc in self.processes.items() if name.startswith("sfu")]

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"{self.api_url}/v1/apps/{APP}",
            headers={"Authorization": f"Bearer {SECRET}"},
            timeout=30,
        )

    def sessions(self) -> Any:
        """A sessions API client straight at the (first) SFU node, with loopback-only ICE."""
        return _sessions_client(self.sfu_url)

    def pid(self, name: str) -> int:
        return self.processes[name].pid

    def host_of(self, pid: int) -> str | None:
        """The worker host (`worker-<name>` process) an adapter process descends from."""
        hosts = {
            proc.pid: name for name, proc in self.processes.items() if name.startswith("worker")
        }
        for _ in range(4):  # adapter → RQ worker process → pool
            try:
                pid = parent_pid(pid)
            except (FileNotFoundError, ProcessLookupError):
                return None
            if pid in hosts:
                return hosts[pid]
        return None

    async def create(self, item: dict[str, Any]) -> dict[str, Any]:
        """Creates one adapter; raises with the body if it failed."""
        async with self.client() as client:
            resp = await client.post("/adapters/websocket/new", json={"tracks": [item]})
        if resp.status_code != 200:
            raise RuntimeError(f"create failed: {resp.status_code} {resp.text}")
        return dict(resp.json()["tracks"][0])

    async def view(self, adapter_id: str) -> dict[str, Any]:
        async with self.client() as client:
            return dict((await client.get(f"/adapters/websocket/{adapter_id}")).json())

    async def close(self, adapter_ids: list[str]) -> None:
        if not adapter_ids:
            return
        async with self.client() as client:
            body = {"tracks": [{"adapterId": a} for a in adapter_ids]}
            await client.post("/adapters/websocket/close", json=body)

    def adapter_pid(self, adapter_id: str) -> int:
        """The pid of the forked process running this adapter (`host:pid` in Redis)."""
        conn = redis.Redis.from_url(self.redis_url, decode_responses=True)
        try:
            worker = conn.hget(f"sluice:adapter:{adapter_id}", "worker")
        finally:
            conn.close()
        if not worker:
            raise RuntimeError(f"adapter {adapter_id} has no worker")
        return int(str(worker).rsplit(":", 1)[1])

    def stop(self) -> None:
        nodes = sorted(name for name in self.processes if name.startswith("sfu"))
        hosts = sorted(name for name in self.processes if name.startswith("worker"))
        for name in (*hosts, "api", *nodes, "redis"):
            proc = self.processes.get(name)
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


SESSION_NICE = -19  # `prioritize_session`: an autogroup weighs ~70x a nice 0 session


@contextlib.contextmanager
def prioritized_session() -> Iterator[None]:
    """Gives this session's processes (this one and every stack it starts) the CPU first.

    Linux schedules sessions against each other by their autogroup, whose nice a
    process's own nice does not change; on a machine shared with other work, this is
    what keeps that work from deciding a capacity figure. Needs root; the session's
    previous nice comes back on exit (run the bench under `setsid` to be sure).

    Raises:
        OSError: not Linux with autogroups, or not allowed.
    """
    autogroup = Path("/proc/self/autogroup")
    before = autogroup.read_text().split()[-1]  # "/autogroup-34 nice 0"
    autogroup.write_text(str(SESSION_NICE))
    try:
        yield
    finally:
        autogroup.write_text(before)


def _sessions_client(sfu_url: str) -> Any:
    from sluice.config import Settings
    from sluice.media.calls_client import SessionsClient
    from sluice.media.ice import rtc_configuration

    settings = Settings(apps=f"{APP}:{SECRET}", ice_loopback=True)
    # Generous: on a loaded machine a negotiation through a cascade takes seconds.
    return SessionsClient(
        f"{sfu_url}/v1/apps/{APP}",
        SECRET,
        configuration=rtc_configuration(settings),
        timeout_s=30.0,
    )


def _wait_until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for {what}")


def _healthy(url: str) -> Callable[[], bool]:
    return lambda: answers_healthz(url)


@contextlib.contextmanager
def running_stack(
    workers: int,
    log_dir: Path | None = None,
    settings: dict[str, str] | None = None,
    sfu_nodes: int = 1,
    hosts: dict[str, WorkerHost] | None = None,
) -> Iterator[Stack]:
    """Starts redis-server and the Sluice processes; stops them all on exit.

    Args:
        workers: size of the worker pool (the most adapters that can run at once);
            0 starts neither workers nor the API (an SFU-only stack).
        log_dir: where the processes' logs go (a temporary directory by default).
        settings: more `SLUICE_*` settings for the processes (e.g. limits).
        sfu_nodes: SFU node processes (`sfu`, `sfu-2`, ...), each on its own port.
        hosts: instead of one worker host, one per entry (`worker-<name>`), each with
            `workers` processes, its settings and interpreter: an A/B of a setting in
            one run (with as many adapters as processes, each host runs `workers`).
    """
    from rq import Queue, Worker

    from sluice.cli.devserver import redis_server_binary, spawn_redis

    binary = redis_server_binary()
    if binary is None:
        raise RuntimeError("no redis-server: apt-get install redis-server")
    log_dir = log_dir or Path(tempfile.mkdtemp(prefix="sluice-bench-"))
    redis_port, api_port, sfu_port = free_port(), free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    sfu_url, api_url = f"http://127.0.0.1:{sfu_port}", f"http://127.0.0.1:{api_port}"
    processes: dict[str, subprocess.Popen[bytes]] = {
        "redis": spawn_redis(binary, redis_port, log_dir / "redis")
    }
    env = dict(os.environ)
    env.update(
        {
            "SLUICE_APPS": f"{APP}:{SECRET}",
            "SLUICE_REDIS_URL": redis_url,
            "SLUICE_SFU_URL": sfu_url,
            "SLUICE_LOG_FORMAT": "json",
            "SLUICE_ALLOW_PRIVATE_ENDPOINTS": "1",
            "SLUICE_ICE_LOOPBACK": "1",
            **(settings or {}),
        }
    )
    node_ports = [sfu_port, *(free_port() for _ in range(sfu_nodes - 1))]
    commands = {
        ("sfu" if i == 0 else f"sfu-{i + 1}"): ["sfu", "--nodes", "1", "--port", str(port)]
        for i, port in enumerate(node_ports)
    }
    host_env: dict[str, tuple[Path, dict[str, str]]] = {}
    if workers:
        commands["api"] = ["api", "--port", str(api_port)]
        for i, (host, spec) in enumerate((hosts or {"": WorkerHost()}).items()):
            name = f"worker-{host}" if host else "worker"
            commands[name] = ["worker", "--processes", str(workers)]
            # One health server per machine port: the first host's only.
            health = {"SLUICE_WORKER_HEALTH_PORT": "0"} if i else {}
            code = {"PYTHONPATH": str(spec.code_dir)} if spec.code_dir else {}
            host_env[name] = (spec.bin_dir, {**env, **spec.settings, **health, **code})
    pool = workers * len(hosts or [""])
    sfu_urls = [f"http://127.0.0.1:{port}" for port in node_ports]
    stack = Stack(processes, redis_url, api_url, sfu_url, log_dir, pool, sfu_urls, env)
    try:
        for name, args in commands.items():
            bin_dir, process_env = host_env.get(name, (BIN, env))
            processes[name] = subprocess.Popen(
                [str(bin_dir / "sluice"), *args],
                env=process_env,
                stdout=subprocess.DEVNULL,
                stderr=open(log_dir / f"{name}.log", "ab"),  # noqa: SIM115
            )
        for url in sfu_urls:
            _wait_until(_healthy(url), 40, f"the SFU node at {url}")
        if workers:
            _wait_until(_healthy(api_url), 40, "the API")
            queue = Queue("sluice-adapters", connection=redis.Redis.from_url(redis_url))
            _wait_until(lambda: len(Worker.all(queue=queue)) >= pool, 60, "the worker pool")
        yield stack
    finally:
        stack.stop()


MessageHandler = Callable[[str, bytes, float], None]  # (path, message, arrival time)
Connect = Callable[[str, ServerConnection], Coroutine[Any, Any, None]]  # (path, connection)


@dataclass
class Endpoint:
    """A WebSocket server the adapters dial; every binary message goes to `on_message`.

    Connections are told apart by URL path (`url(name)`), so one server serves many
    adapters. `on_connect(path, ws)` may run a sender for ingest adapters.
    """

    on_message: MessageHandler | None = None
    on_connect: Connect | None = None
    server: Server | None = None
    connected: dict[str, float] = field(default_factory=dict)

    def url(self, name: str) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"ws://127.0.0.1:{port}/{name}"

    async def _handler(self, ws: ServerConnection) -> None:
        path = ws.request.path.lstrip("/") if ws.request else ""
        self.connected[path] = time.monotonic()
        sender: asyncio.Task[None] | None = None
        if self.on_connect is not None:
            sender = asyncio.create_task(self.on_connect(path, ws))
        try:
            async for message in ws:
                now = time.monotonic()
                if self.on_message is not None and isinstance(message, bytes):
                    self.on_message(path, message, now)
        except ConnectionClosed:
            pass
        finally:
            if sender is not None:
                sender.cancel()
                await asyncio.gather(sender, return_exceptions=True)


@contextlib.asynccontextmanager
async def endpoint(
    on_message: MessageHandler | None = None,
    on_connect: Connect | None = None,
) -> AsyncIterator[Endpoint]:
    ep = Endpoint(on_message, on_connect)
    async with serve(ep._handler, "127.0.0.1", 0, max_size=2**22) as server:
        ep.server = server
        yield ep


def egress_item(url: str, session_id: str, track: str, codec: str) -> dict[str, str]:
    return {
        "location": "remote",
        "sessionId": session_id,
        "trackName": track,
        "endpoint": url,
        "outputCodec": codec,
    }


def ingest_item(url: str, track: str) -> dict[str, str]:
    return {"location": "local", "trackName": track, "endpoint": url, "inputCodec": "pcm"}


# --- /proc -----------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """utime + stime of every thread of `pid`, in seconds."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """(utime, stime) of every thread of `pid`, in seconds: in the process's own code and
    in the kernel on its behalf (system calls: socket reads and writes, polls)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


def parent_pid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def memory_kib(pid: int) -> dict[str, int]:
    """Rss, Pss and private (clean + dirty) memory of `pid` from smaps_rollup, in KiB."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[0].isdigit():
            values[name] = int(parts[0])
    private = values.get("Private_Clean", 0) + values.get("Private_Dirty", 0)
    return {"rss_kib": values["Rss"], "pss_kib": values["Pss"], "private_kib": private}


class CpuWindow:
    """CPU % of one core per process between `start()` and `stop()`; after `stop()`,
    `system_pct` holds the part of it spent in the kernel (stime)."""

    def __init__(self, pids: dict[str, int]) -> None:
        self.pids = pids
        self._start: dict[str, tuple[float, float]] = {}
        self._t0 = 0.0
        self.system_pct: dict[str, float] = {}

    def start(self) -> None:
        self._t0 = time.monotonic()
        self._start = {name: cpu_split(pid) for name, pid in self.pids.items()}

    def stop(self) -> dict[str, float]:
        """CPU % per process; a process gone during the window is left out."""
        elapsed = time.monotonic() - self._t0
        used, system = {}, {}
        for name, pid in self.pids.items():
            with contextlib.suppress(FileNotFoundError, ProcessLookupError):
                (user0, system0), (user1, system1) = self._start[name], cpu_split(pid)
                used[name] = user1 + system1 - user0 - system0
                system[name] = system1 - system0
        self.system_pct = {name: 100.0 * seconds / elapsed for name, seconds in system.items()}
        return {name: 100.0 * seconds / elapsed for name, seconds in used.items()}
