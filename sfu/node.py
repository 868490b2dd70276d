"""This process as one SFU node: its identity, address, and heartbeat into the directory.

The node id carries a random part, so a restarted node is a new node: sessions of the
old one (gone with its memory) are never routed to the new one, and other nodes'
cascades from the old one notice that it left.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import secrets
import socket
import time
from collections.abc import Callable

import structlog
from redis.asyncio import Redis
from redis.exceptions import RedisError

from sluice.config import Settings
from sluice.state import sfu_nodes
from sluice.state.sfu_nodes import NodeInfo, NodeLoad

log = structlog.get_logger("sluice.sfu")

_WILDCARDS = ("", "0.0.0.0", "::", "[::]")


def node_url(settings: Settings) -> str:
    """Where the API and the other nodes reach this node's sessions API."""
    host = settings.sfu_advertise_host or settings.sfu_host
    if host in _WILDCARDS:
        host = socket.getfqdn()
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # an IPv6 literal
    return f"http://{host}:{settings.sfu_port}"


class CpuMeter:
    """CPU % of one core this process used (every thread) since the previous reading."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._last = (clock(), time.process_time())

    def read(self) -> float:
        now, cpu = self._clock(), time.process_time()
        (then, cpu_then), self._last = self._last, (now, cpu)
        return 100.0 * (cpu - cpu_then) / (now - then) if now > then else 0.0


class Node:
    """Registers this SFU process in the node directory and keeps its entry fresh.

    Args:
        settings: `sfu_host`, `sfu_port`, `sfu_advertise_host`.
        redis: where the directory lives.
        load: the node's current load, read at each heartbeat.
    """

    def __init__(
        self,
        settings: Settings,
        redis: Redis,
        load: Callable[[], NodeLoad],
        on_forgotten: Callable[[], None] = lambda: None,
    ) -> None:
        host = socket.gethostname()
        self.id = f"{host}-{settings.sfu_port}-{secrets.token_hex(3)}"
        self.url = node_url(settings)
        self._host = host
        self._redis = redis
        self._load = load
        self._started_at_ms = int(time.time() * 1000)
        self._cpu = CpuMeter()
        self.registered = False  # the last heartbeat reached Redis
        self._beats = 0
        self._on_forgotten = on_forgotten
        self.log = log.bind(node_id=self.id, url=self.url)

    def info(self) -> NodeInfo:
        load = dataclasses.replace(self._load(), cpu_pct=round(self._cpu.read(), 1))
        return NodeInfo(self.id, self.url, self._host, os.getpid(), self._started_at_ms, load)

    async def beat(self) -> None:
        """One heartbeat; Redis trouble is logged once, when the node drops out.

        An entry found missing after the first beat means Redis lost what this node wrote
        (restarted empty, or the node stalled past its TTL): `on_forgotten` is called so
        the node writes its sessions back at once.
        """
        try:
            missing = await sfu_nodes.beat(self._redis, self.info())
            self._beats += 1
            if not self.registered:
                self.log.info("sfu_node_registered")
            self.registered = True
            if missing and self._beats > 1:
                self.log.warning("sfu_node_forgotten_by_redis")
                self._on_forgotten()
        except (RedisError, OSError) as exc:
            if self.registered:
                self.log.warning("sfu_node_heartbeat_failed", error=str(exc))
            self.registered = False

    async def heartbeat(self) -> None:
        """Beats every `HEARTBEAT_INTERVAL_S` until cancelled, the first an interval from
        now: the process beats once (`beat`) before it serves."""
        while True:
            await asyncio.sleep(sfu_nodes.HEARTBEAT_INTERVAL_S)
            await self.beat()

    async def leave(self) -> None:
        """Leaves the directory at shutdown (a dead node's entry expires by itself)."""
        try:
            await sfu_nodes.leave(self._redis, self.id)
        except (RedisError, OSError) as exc:
            self.log.warning("sfu_node_leave_failed", error=str(exc))
        self.log.info("sfu_node_left")
