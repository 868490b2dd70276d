"""The SFU node directory in Redis: which nodes are alive, where they answer, their load.

Every `sluice sfu` node process heartbeats its address and load here once a second with
a TTL of `NODE_TTL_MS`: a node that dies (even SIGKILLed) leaves the directory within
that time, with nothing to clean up. The API places new sessions with `choose` and
routes later calls to the node that holds a session (`track_registry.session_node`);
pipelines and the SFU nodes' cascades read the same directory.

Keys:
    sluice:sfu:nodes           zset  node id → last heartbeat (ms)
    sluice:sfu:node:{nodeId}   hash  url, host, pid, started_at, and the load fields
"""

from __future__ import annotations

import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, cast

from redis.asyncio import Redis

from sluice.state import keys

HEARTBEAT_INTERVAL_S = 1.0
NODE_TTL_MS = 3_000  # three missed heartbeats: the node is gone


@dataclass(frozen=True, slots=True)
class NodeLoad:
    """What a node carries, as of its last heartbeat."""

    sessions: int = 0
    published: int = 0  # tracks published by its sessions
    forwarded: int = 0  # streams its senders forward: subscribers, cascades to other nodes
    upstreams: int = 0  # tracks it pulls from other nodes (cascades in)
    cpu_pct: float = 0.0  # of one core, over the last heartbeat interval

    @property
    def streams(self) -> int:
        """Media streams the node moves: each costs about the same CPU (bench.sfu)."""
        return self.published + self.forwarded + self.upstreams


@dataclass(frozen=True, slots=True)
class NodeInfo:
    node_id: str
    url: str  # its sessions API: `{url}/v1/apps/{appId}/sessions/...`
    host: str
    pid: int
    started_at_ms: int
    load: NodeLoad
    beat_at_ms: int = 0


async def beat(redis: Redis, node: NodeInfo) -> bool:
    """Writes (or re-creates, e.g. after a Redis flush) a node's entry and renews its TTL.

    Returns:
        Whether the entry was missing: the node's first beat, or Redis lost it.
    """
    key = keys.sfu_node(node.node_id)
    now_ms = int(time.time() * 1000)
    mapping: dict[Any, str | int | float] = {
        "url": node.url,
        "host": node.host,
        "pid": node.pid,
        "started_at": node.started_at_ms,
        **asdict(node.load),
    }
    async with redis.pipeline(transaction=True) as pipe:
        pipe.hset(key, mapping=mapping)
        pipe.pexpire(key, NODE_TTL_MS)
        pipe.zadd(keys.SFU_NODES, {node.node_id: now_ms})
        pipe.pexpire(keys.SFU_NODES, NODE_TTL_MS)  # with every node gone, the index goes too
        added_fields = (await pipe.execute())[0]
    return bool(added_fields)


async def leave(redis: Redis, node_id: str) -> None:
    """Takes a node out of the directory (a clean shutdown)."""
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(keys.sfu_node(node_id))
        pipe.zrem(keys.SFU_NODES, node_id)
        await pipe.execute()


async def get(redis: Redis, node_id: str) -> NodeInfo | None:
    """The node's entry, or None when it is not alive."""
    raw = await redis.hgetall(keys.sfu_node(node_id))
    return _parse(node_id, raw, 0) if raw else None


async def is_alive(redis: Redis, node_id: str) -> bool:
    return bool(await redis.exists(keys.sfu_node(node_id)))


async def live_nodes(redis: Redis) -> list[NodeInfo]:
    """Every node alive now, oldest first; forgets the index entries of dead ones."""
    members = cast(
        list[tuple[Any, float]], await redis.zrange(keys.SFU_NODES, 0, -1, withscores=True)
    )
    if not members:
        return []
    async with redis.pipeline(transaction=False) as pipe:
        for node_id, _ in members:
            pipe.hgetall(keys.sfu_node(_text(node_id)))
        replies = await pipe.execute()
    alive: list[NodeInfo] = []
    dead: list[str] = []
    for (raw_id, score), raw in zip(members, replies, strict=True):
        node_id = _text(raw_id)
        if raw:
            alive.append(_parse(node_id, raw, int(score)))
        else:
            dead.append(node_id)
    if dead:
        await redis.zrem(keys.SFU_NODES, *dead)
    alive.sort(key=lambda n: (n.started_at_ms, n.node_id))
    return alive


def score(load: NodeLoad, placed_since_beat: int = 0) -> tuple[int, int, float]:
    """Lower is better: streams first, then sessions, then CPU.

    A new session adds streams, and streams are what a node spends its CPU on (each
    forwarded audio stream costs about the same); the count is exact as of the last
    heartbeat, where CPU is an average that lags and jitters. Sessions placed since that
    heartbeat count as one stream each, so a burst does not land on one node.
    """
    return (load.streams + placed_since_beat, load.sessions, load.cpu_pct)


def choose(
    nodes: Sequence[NodeInfo],
    placed_since_beat: Mapping[str, int] | None = None,
    rng: random.Random | None = None,
) -> NodeInfo | None:
    """Where a new session goes: the less loaded of two nodes drawn at random.

    The "power of two choices": every API replica and pipeline places on loads up to a
    heartbeat old, so always taking the single least loaded node would send a burst to
    one node; two random candidates spread it while still avoiding loaded nodes.
    """
    if not nodes:
        return None
    placed = placed_since_beat or {}
    candidates = (rng or random).sample(list(nodes), min(2, len(nodes)))
    return min(candidates, key=lambda n: score(n.load, placed.get(n.node_id, 0)))


def _parse(node_id: str, raw: Mapping[str | bytes, str | bytes], beat_at_ms: int) -> NodeInfo:
    data = {_text(k): _text(v) for k, v in raw.items()}
    load = NodeLoad(
        sessions=int(data.get("sessions") or 0),
        published=int(data.get("published") or 0),
        forwarded=int(data.get("forwarded") or 0),
        upstreams=int(data.get("upstreams") or 0),
        cpu_pct=float(data.get("cpu_pct") or 0.0),
    )
    return NodeInfo(
        node_id=node_id,
        url=data.get("url", ""),
        host=data.get("host", ""),
        pid=int(data.get("pid") or 0),
        started_at_ms=int(data.get("started_at") or 0),
        load=load,
        beat_at_ms=beat_at_ms,
    )


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value
