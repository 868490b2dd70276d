"""The SFU's `/metrics` and `/readyz`: a real SFU process, real media, a real (and a dead) Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.parser import text_string_to_metric_families

from sfu.app import create_app
from sfu.metrics import CLOSE_REASONS, KINDS
from sluice.config import Settings
from sluice.media.aiortc_internals import receive_counts
from sluice.media.calls_client import SessionsClient
from sluice.media.ice import rtc_configuration
from sluice.media.types import EncodedFrame
from tests.conftest import free_port
from tests.sfu.conftest import APPS, LOOPBACK, Server, start_server, stop_server
from tests.sfu.media import (
    SAMPLES,
    VIDEO_CLOCK,
    PacketLoopTrack,
    encode_opus_tone,
    encode_vp8_colour,
)
from tests.sfu.peers import wait_for

pytestmark = pytest.mark.timeout(60)
IDLE_S = 2.0  # sessions without media go this soon after their publisher leaves
RECEIVED = "sluice_sfu_rtp_packets_received_total"
LOST = "sluice_sfu_rtp_packets_lost_total"
FORWARDED = "sluice_sfu_frames_forwarded_total"
SFU_FAMILIES = {
    "sluice_sfu_sessions",
    "sluice_sfu_tracks",
    "sluice_sfu_subscribers",
    "sluice_sfu_rtp_packets_received",
    "sluice_sfu_rtp_packets_lost",
    "sluice_sfu_frames_forwarded",
    "sluice_sfu_session_closes",
}


@pytest.fixture(scope="module")
def metered_sfu(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """An SFU of this module's own: the gauges count only this module's sessions."""
    server = start_server(
        "sfu",
        redis_url,
        tmp_path_factory.mktemp("sfu-metrics"),
        {"SLUICE_SFU_SESSION_IDLE_TIMEOUT_S": str(IDLE_S)},
    )
    yield server
    stop_server(server)


class Scrape:
    """One parsed `/metrics` answer."""

    def __init__(self, text: str) -> None:
        self.families = list(text_string_to_metric_families(text))
        self._values = {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in self.families
            for sample in family.samples
        }

    def __call__(self, name: str, **labels: str) -> float:
        return self._values[name, tuple(sorted(labels.items()))]


async def scrape(http: httpx.AsyncClient) -> Scrape:
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"] == CONTENT_TYPE_LATEST
    return Scrape(response.text)


async def scrape_until(
    http: httpx.AsyncClient, done: Callable[[Scrape], bool], within: float
) -> Scrape:
    """Scrapes until `done` holds (test-only polling: there is no event to wait on)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not done(result := await scrape(http)):
        if loop.time() > deadline:
            raise TimeoutError("the metrics did not get there in time")
        await asyncio.sleep(0.1)
    return result


async def test_metrics_follow_sessions_tracks_and_media(metered_sfu: Server) -> None:
    opus = encode_opus_tone(523.0, 25)
    vp8 = encode_vp8_colour((40, 200, 40), 30, gop=10)
    client = SessionsClient(
        metered_sfu.app_url(), "secret1", configuration=rtc_configuration(LOOPBACK)
    )
    http = httpx.AsyncClient(base_url=metered_sfu.url, timeout=5)
    try:
        publisher = await client.new_peer()
        await publisher.publish(
            [
                PacketLoopTrack("audio", opus, SAMPLES, 48_000),
                PacketLoopTrack("video", vp8, VIDEO_CLOCK // 30, VIDEO_CLOCK),
            ],
            ["mic", "cam"],
        )
        subscriber = await client.new_peer()
        got: dict[str, list[EncodedFrame]] = {"audio": [], "video": []}
        for kind, name in (("audio", "mic"), ("video", "cam")):
            await subscriber.pull(publisher.session_id, name, kind=kind, on_frame=got[kind].append)
        await wait_for(lambda: all(len(frames) >= 10 for frames in got.values()), within=15)

        first = await scrape(http)
        names = {family.name for family in first.families}
        assert names >= SFU_FAMILIES
        assert all(name.startswith(("sluice_", "process_", "python_")) for name in names), names
        assert first("sluice_sfu_sessions") == 2
        for kind in KINDS:
            assert first("sluice_sfu_tracks", kind=kind) == 1
            assert first("sluice_sfu_subscribers", kind=kind) == 1
            assert first(LOST, kind=kind) >= 0
        for reason in CLOSE_REASONS:
            assert first("sluice_sfu_session_closes_total", reason=reason) == 0

        seen = {kind: len(frames) for kind, frames in got.items()}
        await wait_for(lambda: all(len(got[k]) >= seen[k] + 10 for k in KINDS), within=10)
        seen = {kind: len(frames) for kind, frames in got.items()}
        second = await scrape(http)
        for kind in KINDS:
            assert second(RECEIVED, kind=kind) > first(RECEIVED, kind=kind) > 0
            assert second(FORWARDED, kind=kind) > first(FORWARDED, kind=kind) > 0
            # A frame reaches the subscriber only once forwarded, and is one packet or more.
            assert seen[kind] <= second(FORWARDED, kind=kind) <= second(RECEIVED, kind=kind)

        # The figures read without awaiting are those aiortc's getStats() reports.
        for transceiver in subscriber.pc.getTransceivers():
            counts = receive_counts(transceiver.receiver)
            report = await transceiver.receiver.getStats()
            inbound = [s for s in report.values() if s.type == "inbound-rtp"]
            assert counts.packets_received >= inbound[0].packetsReceived > 0

        await publisher.close()  # RTCP BYE and a DTLS close: its tracks and session end now
        ended = await scrape_until(
            http,
            lambda s: all(
                s("sluice_sfu_tracks", kind=k) == 0 and s("sluice_sfu_subscribers", kind=k) == 0
                for k in KINDS
            ),
            within=5,
        )
        # The publisher closed its peer connection: its session goes at once.
        # Then the subscriber's, with nothing left to receive, once idle.
        final = await scrape_until(http, lambda s: s("sluice_sfu_sessions") == 0, IDLE_S * 4)
        for kind in KINDS:
            for counter in (RECEIVED, LOST, FORWARDED):
                assert final(counter, kind=kind) >= ended(counter, kind=kind)
                assert ended(counter, kind=kind) >= second(counter, kind=kind)
        closes = {r: final("sluice_sfu_session_closes_total", reason=r) for r in CLOSE_REASONS}
        assert (closes["peer_closed"], closes["idle"]) == (1, 1), closes
        assert sum(closes.values()) == 2, closes
    finally:
        await client.close()
        await http.aclose()


async def test_readyz_answers_with_redis_up(metered_sfu: Server) -> None:
    async with httpx.AsyncClient(base_url=metered_sfu.url, timeout=5) as http:
        response = await http.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ready", "checks": {"redis": "ok"}}


@asynccontextmanager
async def serve(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """The app in this process, lifespan included, without a socket."""
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://sfu.test") as http:
            yield http


async def test_readyz_is_503_without_redis_and_apps_keep_their_own_metrics(
    redis_url: str,
) -> None:
    dead_redis = f"redis://127.0.0.1:{free_port()}/0"
    down_app = create_app(Settings(apps=APPS, redis_url=dead_redis))
    up_app = create_app(Settings(apps=APPS, redis_url=redis_url))
    async with serve(down_app) as down, serve(up_app) as up:
        loop = asyncio.get_running_loop()
        started = loop.time()
        response = await down.get("/readyz")
        assert loop.time() - started < 2.0
        assert response.status_code == 503
        body = response.json()
        assert body["status"] == "unready"
        assert set(body["checks"]) == {"redis"} and body["checks"]["redis"]
        assert (await up.get("/readyz")).status_code == 200
        # Two apps in one process: each registry has its own collectors, no name clashes.
        for http in (down, up):
            metrics = await scrape(http)
            assert metrics("sluice_sfu_sessions") == 0
            assert metrics("process_cpu_seconds_total") >= 0
    schema = up_app.openapi()
    assert schema["paths"]["/metrics"]["get"]["tags"] == ["operations"]
