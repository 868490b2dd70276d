"""`session_lost`: how often a pipeline asks the SFU node about its session, and when it
gives up. The intervals are scaled down a hundredfold; the ratios are the real ones.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

import fakeredis
import httpx
import pytest

from sluice.media.calls_client import Peer, SessionsApiError
from sluice.state.sfu_nodes import NodeInfo, NodeLoad, beat
from worker.pipelines import sfu_link

NODE = "node-a"
SCALE = 0.01


class FakePeer:
    """A session whose node answers `GET` as told; its connection stays up."""

    def __init__(self) -> None:
        self.answer: Exception | None = None
        self.asked: list[float] = []
        self.pc = type("Pc", (), {"connectionState": "connected"})()

    async def state(self) -> dict[str, Any]:
        self.asked.append(asyncio.get_running_loop().time())
        if self.answer is not None:
            raise self.answer
        return {"tracks": []}


@pytest.fixture(autouse=True)
def faster(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "NODE_CHECK_EVERY_S",
        "CHECK_EVERY_S",
        "WATCHED_CHECK_EVERY_S",
        "UNREACHABLE_FOR_S",
    ):
        monkeypatch.setattr(sfu_link, name, getattr(sfu_link, name) * SCALE)


async def lost(peer: FakePeer, redis: Any = None, node: str = "", within: float = 1.0) -> str:
    return await asyncio.wait_for(sfu_link.session_lost(cast(Peer, peer), redis, node), within)


async def test_unwatched_it_asks_every_few_seconds_and_gives_up_after_six() -> None:
    peer = FakePeer()
    peer.answer = httpx.ConnectError("refused")
    assert await lost(peer) == "the SFU is unreachable"
    assert len(peer.asked) == 3  # at 3, 6 and 9 s: 6 s without an answer


async def test_a_forgotten_session_ends_it_at_the_next_ask() -> None:
    peer = FakePeer()
    peer.answer = SessionsApiError(404, "not_found", "no such session")
    assert await lost(peer) == "the SFU no longer has this session"
    assert len(peer.asked) == 1


async def test_watched_it_asks_the_node_less_often_and_as_often_once_it_fails() -> None:
    redis = fakeredis.FakeAsyncRedis()
    await beat(redis, NodeInfo(NODE, "http://127.0.0.1:1", "h", 1, 0, NodeLoad()))
    peer = FakePeer()
    task = asyncio.create_task(lost(peer, redis, NODE, within=5.0))
    await asyncio.sleep(sfu_link.WATCHED_CHECK_EVERY_S * 1.5)
    assert len(peer.asked) == 2  # at 1 s, then 15 s later (the directory says it lives)
    peer.answer = httpx.ConnectError("refused")
    assert await task == "the SFU is unreachable"
    failed = peer.asked[2:]
    gaps = [b - a for a, b in itertools.pairwise(failed)]
    assert len(failed) == 3 and all(g < sfu_link.WATCHED_CHECK_EVERY_S / 2 for g in gaps)
