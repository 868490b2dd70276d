"""An SFU node notices when Redis forgot it, and has its sessions written back at once."""

from __future__ import annotations

import asyncio

import fakeredis
import pytest

from sfu import node as node_module
from sfu.node import Node
from sluice.config import Settings
from sluice.state import keys
from sluice.state.sfu_nodes import NodeLoad


async def test_a_node_redis_forgot_asks_for_its_registry_to_be_rewritten(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(node_module.sfu_nodes, "HEARTBEAT_INTERVAL_S", 0.01)
    redis = fakeredis.FakeAsyncRedis()
    forgotten: list[float] = []
    node = Node(Settings(apps="a:b"), redis, NodeLoad, on_forgotten=lambda: forgotten.append(1))
    beating = asyncio.create_task(node.heartbeat())
    try:
        await asyncio.sleep(0.1)
        assert forgotten == []  # the first beat creates the entry: nothing was lost
        await redis.flushall()  # Redis restarted empty
        for _ in range(500):  # the next beat sees it (a loaded machine may be slow to run it)
            if forgotten:
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)  # and only once: the beat wrote the entry back
        assert forgotten == [1]
        assert await redis.exists(keys.sfu_node(node.id))
    finally:
        # Cancelled in its sleep, not inside fakeredis's transaction: a pipeline cancelled
        # mid-execute could leave the fake connection waiting forever (a hang seen under
        # the full suite's load).
        monkeypatch.setattr(node_module.sfu_nodes, "HEARTBEAT_INTERVAL_S", 60.0)
        await asyncio.sleep(0.1)
        beating.cancel()
        await asyncio.wait_for(asyncio.gather(beating, return_exceptions=True), 5)
