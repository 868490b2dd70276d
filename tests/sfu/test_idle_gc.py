"""Sessions without media are collected; sessions with media are not."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from sluice.errors import SessionNotFound
from sluice.media.calls_client import SessionsApiError, SessionsClient
from sluice.media.ice import rtc_configuration
from sluice.state import track_registry
from tests.sfu.conftest import LOOPBACK, Server, start_server, stop_server
from tests.sfu.media import ToneTrack

pytestmark = pytest.mark.timeout(60)
IDLE_S = 1.5


@pytest.fixture(scope="module")
def quick_sfu(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    server = start_server(
        "sfu",
        redis_url,
        tmp_path_factory.mktemp("sfu-gc"),
        {"SLUICE_SFU_SESSION_IDLE_TIMEOUT_S": str(IDLE_S)},
    )
    yield server
    stop_server(server)


@pytest.fixture
async def quick_client(quick_sfu: Server) -> AsyncIterator[SessionsClient]:
    c = SessionsClient(quick_sfu.app_url(), "secret1", configuration=rtc_configuration(LOOPBACK))
    yield c
    await c.close()


async def exists(client: SessionsClient, session_id: str) -> bool:
    try:
        await client.call("GET", f"/{session_id}")
    except SessionsApiError as exc:
        assert exc.error_code == "not_found_session_error"
        return False
    return True


async def test_idle_sessions_go_and_live_ones_stay(
    quick_client: SessionsClient, redis_url: str
) -> None:
    idle = (await quick_client.call("POST", "/new"))["sessionId"]
    publisher = await quick_client.new_peer()
    await publisher.publish([ToneTrack(440.0)], ["mic"])
    subscriber = await quick_client.new_peer()
    audio = await subscriber.pull(publisher.session_id, "mic", kind="audio")
    await asyncio.wait_for(audio.recv(), timeout=10)

    await asyncio.sleep(IDLE_S * 2.5)
    assert not await exists(quick_client, idle)
    assert await exists(quick_client, publisher.session_id)
    assert await exists(quick_client, subscriber.session_id)

    # The publisher's client goes away without a word: its media stops, then its session.
    await publisher.pc.close()
    await asyncio.sleep(IDLE_S * 3)
    assert not await exists(quick_client, publisher.session_id)
    r = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        with pytest.raises(SessionNotFound):
            await track_registry.lookup_track(r, "app1", publisher.session_id, "mic")
    finally:
        await r.aclose()
