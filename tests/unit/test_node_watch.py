"""An SFU node missing from the directory is gone only if it does not serve the session.

Redis restarted empty forgets every node until its next heartbeat: before, every
pipeline and cascade that looked in that second took its node for dead and ended.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import fakeredis
import httpx
import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from sluice.media import node_watch
from sluice.media.calls_client import Peer, SessionsApiError
from sluice.state import keys
from sluice.state.sfu_nodes import NodeInfo, NodeLoad, beat

NODE = "node-a"


class FakePeer:
    """A session whose node answers `GET` as told."""

    def __init__(self, answer: Exception | None = None, hang: bool = False) -> None:
        self.answer, self.hang, self.asked = answer, hang, 0

    async def state(self) -> dict[str, Any]:
        self.asked += 1
        if self.hang:
            await asyncio.sleep(60)
        if self.answer is not None:
            raise self.answer
        return {"tracks": []}


async def gone(redis: Any, peer: FakePeer) -> str | None:
    return await node_watch.node_gone(redis, NODE, cast(Peer, peer))


@pytest.fixture
def redis() -> fakeredis.FakeAsyncRedis:
    return fakeredis.FakeAsyncRedis()


async def test_a_node_in_the_directory_is_alive_without_asking_it(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    await beat(redis, NodeInfo(NODE, "http://127.0.0.1:1", "h", 1, 0, NodeLoad()))
    peer = FakePeer(answer=httpx.ConnectError("refused"))
    assert await gone(redis, peer) is None
    assert peer.asked == 0  # one Redis call per check, as before


async def test_a_node_redis_forgot_but_that_answers_is_alive(
    redis: fakeredis.FakeAsyncRedis,
) -> None:
    assert not await redis.exists(keys.sfu_node(NODE))  # as after a restart without data
    peer = FakePeer()
    assert await gone(redis, peer) is None
    assert peer.asked == 1


@pytest.mark.parametrize(
    "answer",
    [
        SessionsApiError(404, "not_found_session_error", "no such session"),
        httpx.ConnectError("connection refused"),
    ],
    ids=["restarted node: session unknown", "dead node: refused"],
)
async def test_a_node_missing_that_does_not_serve_the_session_is_gone(
    redis: fakeredis.FakeAsyncRedis, answer: Exception
) -> None:
    why = await gone(redis, FakePeer(answer=answer))
    assert why is not None and NODE in why


async def test_a_frozen_node_is_gone_after_a_short_wait(
    redis: fakeredis.FakeAsyncRedis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(node_watch, "ANSWER_WITHIN_S", 0.05)
    assert await gone(redis, FakePeer(hang=True)) is not None


async def test_a_node_that_answers_an_error_is_alive(redis: fakeredis.FakeAsyncRedis) -> None:
    assert await gone(redis, FakePeer(answer=SessionsApiError(500, "x", "busy"))) is None


async def test_redis_unreachable_is_not_a_death() -> None:
    class Down:
        async def exists(self, *_: object) -> int:
            raise RedisConnectionError("refused")

    peer = FakePeer(answer=httpx.ConnectError("refused"))
    assert await gone(Down(), peer) is None
    assert peer.asked == 0
