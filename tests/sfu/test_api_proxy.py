"""The API forwards the sessions API to the SFU and serves the demo page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from sluice.cli.apps import create_api_app
from sluice.config import Settings
from sluice.media.calls_client import SessionsClient
from sluice.media.ice import rtc_configuration
from tests.conftest import free_port
from tests.sfu.conftest import APPS, LOOPBACK, Server
from tests.sfu.media import ToneTrack

pytestmark = pytest.mark.timeout(60)


def api_client(settings: Settings) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=create_api_app(settings))
    return httpx.AsyncClient(transport=transport, base_url="http://api.test")


@pytest.fixture
async def via_api(sfu: Server, redis_url: str) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(apps=APPS, redis_url=redis_url, sfu_url=sfu.url)
    async with api_client(settings) as c:
        yield c


async def test_calls_are_forwarded_verbatim(via_api: httpx.AsyncClient) -> None:
    auth = {"Authorization": "Bearer secret1"}
    r = await via_api.post(
        "/v1/apps/app1/sessions/new", headers={**auth, "Content-Type": "application/json"}
    )
    assert r.status_code == 201
    sid = r.json()["sessionId"]
    r = await via_api.get(f"/v1/apps/app1/sessions/{sid}", headers=auth)
    assert (r.status_code, r.json()) == (200, {"tracks": []})
    r = await via_api.get(f"/v1/apps/app1/sessions/{sid}", headers={"Authorization": "Bearer x"})
    assert (r.status_code, r.json()["errorCode"]) == (401, "unauthorized")
    r = await via_api.get("/v1/apps/app1/sessions/nope", headers=auth)
    assert (r.status_code, r.json()["errorCode"]) == (404, "not_found_session_error")
    r = await via_api.put(f"/v1/apps/app1/sessions/{sid}/renegotiate", headers=auth, json={})
    assert (r.status_code, r.json()["errorCode"]) == (400, "decoding_error")


async def test_sfu_unreachable_is_503(redis_url: str) -> None:
    # Another database: no SFU node is registered there, so the API uses `sfu_url`.
    empty = redis_url.rsplit("/", 1)[0] + "/7"
    settings = Settings(apps=APPS, redis_url=empty, sfu_url=f"http://127.0.0.1:{free_port()}")
    async with api_client(settings) as c:
        r = await c.post("/v1/apps/app1/sessions/new", headers={"Authorization": "Bearer secret1"})
    assert r.status_code == 503
    assert r.json()["errorCode"] == "service_unavailable"


async def test_demo_page_prefills_the_secret_only_in_dev(redis_url: str) -> None:
    async with api_client(Settings(dev=True, redis_url=redis_url)) as c:
        page = (await c.get("/")).text
    assert 'id="app-secret" type="password" value="demo"' in page
    async with api_client(Settings(apps=APPS, redis_url=redis_url)) as c:
        page = (await c.get("/")).text
    assert 'id="app-secret" type="password" value=""' in page
    assert "{{" not in page


async def test_publish_and_pull_through_the_api(api: Server) -> None:
    client = SessionsClient(api.app_url(), "secret1", configuration=rtc_configuration(LOOPBACK))
    try:
        sid, name = await client.publish(ToneTrack(440.0), "mic")
        audio = await client.pull(sid, name, kind="audio")
        await asyncio.wait_for(audio.recv(), timeout=10)
    finally:
        await client.close()
