"""A small Sluice deployment on one machine, each part a `Host` of its own.

One Redis, two SFU nodes, two API replicas behind a round-robin proxy, two worker hosts
(`sluice worker`, each a supervisor with its pool, health server and pipelines). Every
process listens on 127.0.0.1; each host is a separate session and process group, so it
can be killed whole and started again.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import redis
from rq import Queue, Worker

from sluice.cli.devserver import answers_healthz, free_port, redis_argv, redis_server_binary
from sluice.state import keys
from tests.chaos.hosts import Host
from tests.integration.helpers import APP, BIN, SECRET, stack_env

QUEUE = "sluice-adapters"


@dataclass(frozen=True, slots=True)
class Shape:
    """How big the deployment is."""

    processes: int = 8  # adapter slots per worker host
    sfu_nodes: int = 2
    api_replicas: int = 2
    worker_hosts: int = 2
    settings: dict[str, Any] = field(default_factory=dict)  # SLUICE_* overrides


def wait_until(predicate: Callable[[], bool], timeout_s: float, what: str) -> float:
    """Polls `predicate` until true; returns the seconds it took.

    Raises:
        TimeoutError: not within `timeout_s`.
    """
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout_s:
            raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.05)
    return time.monotonic() - started


class Deployment:
    """Starts, reaches into and stops the hosts (use `with Deployment(...) as d:`)."""

    def __init__(self, shape: Shape, log_dir: Path) -> None:
        binary = redis_server_binary()
        if binary is None:
            raise SystemExit("no redis-server (apt-get install redis-server, or .[bundled-redis])")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.shape = shape
        self.log_dir = log_dir
        self.redis_port = free_port()
        self.redis_url = f"redis://127.0.0.1:{self.redis_port}/0"
        self.redis = Host(
            "redis", redis_argv(binary, self.redis_port, log_dir), {}, log_dir / "redis.log"
        )
        sfu_ports = [free_port() for _ in range(shape.sfu_nodes)]
        # Pipelines fall back to the first node while the directory is empty.
        base = stack_env(
            self.redis_url,
            sfu_url=f"http://127.0.0.1:{sfu_ports[0]}",
            worker_health_port=0,
            **shape.settings,
        )
        self.env = base
        self.sfu = [
            Host(
                f"sfu-{i + 1}",
                [str(BIN / "sluice"), "sfu", "--nodes", "1", "--port", str(port)],
                base,
                log_dir / f"sfu-{i + 1}.log",
                f"http://127.0.0.1:{port}",
            )
            for i, port in enumerate(sfu_ports)
        ]
        api_ports = [free_port() for _ in range(shape.api_replicas)]
        self.api = [
            Host(
                f"api-{i + 1}",
                [str(BIN / "sluice"), "api", "--port", str(port)],
                base,
                log_dir / f"api-{i + 1}.log",
                f"http://127.0.0.1:{port}",
            )
            for i, port in enumerate(api_ports)
        ]
        self.workers = []
        for i in range(shape.worker_hosts):
            health = free_port()
            env = {**base, "SLUICE_WORKER_HEALTH_PORT": str(health)}
            self.workers.append(
                Host(
                    f"worker-{'abcdefgh'[i]}",
                    [str(BIN / "sluice"), "worker", "--processes", str(shape.processes)],
                    env,
                    log_dir / f"worker-{'abcdefgh'[i]}.log",
                    f"http://127.0.0.1:{health}",
                )
            )
        proxy_port = free_port()
        self.proxy = Host(
            "proxy",
            [sys.executable, "-m", "tests.chaos.proxy", "--port", str(proxy_port)]
            + [arg for host in self.api for arg in ("--upstream", host.url)],
            base,
            log_dir / "proxy.log",
            f"http://127.0.0.1:{proxy_port}",
        )
        self._conn: redis.Redis | None = None
        self._rq_conn: redis.Redis | None = None

    @property
    def hosts(self) -> list[Host]:
        return [self.redis, *self.sfu, *self.api, *self.workers, self.proxy]

    @property
    def base_url(self) -> str:
        """The API as clients see it: through the proxy."""
        return self.proxy.url

    @property
    def conn(self) -> redis.Redis:
        if self._conn is None:
            self._conn = redis.Redis.from_url(self.redis_url, decode_responses=True)
        return self._conn

    @property
    def rq_conn(self) -> redis.Redis:
        """A client returning bytes, as RQ's job data needs."""
        if self._rq_conn is None:
            self._rq_conn = redis.Redis.from_url(self.redis_url)
        return self._rq_conn

    def client(self, timeout_s: float = 30.0) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"{self.base_url}/v1/apps/{APP}",
            headers={"Authorization": f"Bearer {SECRET}"},
            timeout=timeout_s,
            # Shorter than the proxy's 5 s keep-alive: see `tests.chaos.proxy`.
            limits=httpx.Limits(
                max_connections=None, max_keepalive_connections=100, keepalive_expiry=2.0
            ),
        )

    def __enter__(self) -> Deployment:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self) -> float:
        """Starts every host and waits until all answer; returns the seconds it took."""
        started = time.monotonic()
        self.start_redis()
        for host in (*self.sfu, *self.api, *self.workers, self.proxy):
            host.start()
        for host in (*self.sfu, *self.api, self.proxy):
            self.wait_healthy(host, 60)
        self.wait_pool(len(self.workers) * self.shape.processes, 60)
        wait_until(lambda: self.sfu_node_count() == len(self.sfu), 20, "the SFU directory")
        return time.monotonic() - started

    def start_redis(self) -> None:
        self.redis.start()
        wait_until(self._redis_answers, 10, "Redis")

    def _redis_answers(self) -> bool:
        try:
            return bool(redis.Redis.from_url(self.redis_url, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def wait_healthy(self, host: Host, timeout_s: float) -> float:
        def up() -> bool:
            if not host.alive():
                raise RuntimeError(f"{host.name} exited:\n{host.tail()}")
            return answers_healthz(host.url)

        return wait_until(up, timeout_s, f"{host.name}'s /healthz")

    def workers_registered(self) -> int:
        try:
            return len(Worker.all(queue=Queue(QUEUE, connection=self.conn)))
        except redis.RedisError:
            return 0

    def wait_pool(self, count: int, timeout_s: float) -> float:
        return wait_until(
            lambda: self.workers_registered() >= count, timeout_s, f"{count} worker processes"
        )

    def host_workers(self, host: Host) -> int:
        """RQ workers registered in Redis that are processes of `host`."""
        try:
            registered = Worker.all(queue=Queue(QUEUE, connection=self.conn))
        except redis.RedisError:
            return 0
        mine = host.processes()
        return sum(1 for w in registered if w.pid in mine)

    def restart_worker_host(self, host: Host, timeout_s: float = 60) -> float:
        """Starts `host` again; returns the seconds until its whole pool registered."""
        host.start()
        return wait_until(
            lambda: self.host_workers(host) >= self.shape.processes,
            timeout_s,
            f"{host.name}'s pool",
        )

    def sfu_node_count(self) -> int:
        """SFU nodes alive in the directory (an index entry whose node entry is there)."""
        try:
            ids: list[str] = self.conn.zrange(keys.SFU_NODES, 0, -1)  # type: ignore[assignment]
            return sum(1 for i in ids if self.conn.exists(keys.sfu_node(i)))
        except redis.RedisError:
            return 0

    def revive(self) -> list[str]:
        """Starts every host that is not running (after a step that failed half-way)."""
        dead = [host for host in self.hosts if not host.alive()]
        if self.redis in dead:
            self.start_redis()
        for host in dead:
            if host is not self.redis:
                host.start()
        for host in dead:
            if host in self.workers:
                wait_until(
                    lambda h=host: self.host_workers(h) >= self.shape.processes, 60, host.name
                )
            elif host is not self.redis:
                self.wait_healthy(host, 60)
        if any(host in self.sfu for host in dead):
            wait_until(lambda: self.sfu_node_count() == len(self.sfu), 20, "the SFU directory")
        return [host.name for host in dead]

    def stop(self) -> None:
        for host in (self.proxy, *self.workers, *self.api, *self.sfu):
            host.stop()
        self.redis.stop()
        for conn in (self._conn, self._rq_conn):
            if conn is not None:
                conn.close()

    def tails(self, hosts: Iterable[Host] | None = None, chars: int = 2500) -> str:
        return "\n".join(
            f"--- {host.name} ({host.log})\n{host.tail(chars)}" for host in hosts or self.hosts
        )
