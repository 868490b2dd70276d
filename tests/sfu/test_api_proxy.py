"""The API forwards the sessions API to the SFU and serves the demo page."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

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


@asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_api_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            yield client


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


async def test_the_sfu_judges_and_its_answers_come_back_unchanged(
    via_api: httpx.AsyncClient, sfu: Server
) -> None:
    auth = {"Authorization": "Bearer secret1"}
    bad_body = b'{"tracks": "not a list"'
    async with httpx.AsyncClient(base_url=sfu.url) as direct:
        for method, path, headers, body in [
            ("GET", "/v1/apps/app1/sessions/nope", {"Authorization": "Bearer x"}, None),
            ("GET", "/v1/apps/nobody/sessions/nope", auth, None),
            # The session is looked up before the body is judged: the API parses nothing.
            ("POST", "/v1/apps/app1/sessions/nope/tracks/new", auth, b"{}"),
            ("POST", "/v1/apps/app1/sessions/new", auth, bad_body),
            ("PUT", "/v1/apps/app1/sessions/nope/tracks/close", auth, b'{"tracks": []}'),
            ("GET", "/v1/apps/app1/sessions/%2E%2E", auth, None),
            ("DELETE", "/v1/apps/app1/sessions/nope", auth, None),
            ("GET", "/v1/apps/app1/sessions/nope/tracks", auth, None),
        ]:
            mine = await via_api.request(method, path, headers=headers, content=body)
            theirs = await direct.request(method, path, headers=headers, content=body)
            assert (mine.status_code, mine.content) == (theirs.status_code, theirs.content)
            for name in ("www-authenticate", "allow", "content-type"):
                assert mine.headers.get(name) == theirs.headers.get(name), (path, name)
    unauthorized = await via_api.get("/v1/apps/app1/sessions/x", headers={"Authorization": "x"})
    assert unauthorized.headers["WWW-Authenticate"] == "Bearer"
    dots = await via_api.get("/v1/apps/app1/sessions/%2E%2E", headers=auth)
    assert (dots.status_code, dots.json()["errorCode"]) == (404, "not_found_session_error")


async def test_sfu_unreachable_is_503(redis_url: str) -> None:
    # Another database: no SFU node is registered there, so the API uses `sfu_url`.
    empty = redis_url.rsplit("/", 1)[0] + "/7"
    settings = Settings(apps=APPS, redis_url=empty, sfu_url=f"http://127.0.0.1:{free_port()}")
    async with api_client(settings) as c:
        r = await c.post("/v1/apps/app1/sessions/new", headers={"Authorization": "Bearer secret1"})
    assert r.status_code == 503
    assert r.json()["errorCode"] == "service_unavailable"
    assert int(r.headers["Retry-After"]) >= 1


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
