"""Real headless Chromium with the demo page: it publishes to aiortc, and pulls from it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from sfu.client import SessionsClient
from sfu.ice import rtc_configuration
from tests.sfu import browser
from tests.sfu.conftest import LOOPBACK, Server
from tests.sfu.media import ColourTrack, ToneTrack, close_to, collect_audio

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(not browser.available(), reason="/usr/bin/chromium is not installed"),
]


@pytest.fixture
async def page(api: Server, tmp_path: Path) -> AsyncIterator[browser.Browser]:
    b = await browser.Browser.launch(f"{api.url}/", tmp_path / "profile")
    try:
        await b.wait_for("document.readyState === 'complete' && !!window.sluiceDemo")
        await b.evaluate(
            "document.getElementById('app-id').value = 'app1';"
            "document.getElementById('app-secret').value = 'secret1'; true"
        )
        yield b
    finally:
        await b.close()


@pytest.fixture
async def client(api: Server) -> AsyncIterator[SessionsClient]:
    c = SessionsClient(api.app_url(), "secret1", configuration=rtc_configuration(LOOPBACK))
    yield c
    await c.close()


async def test_browser_publishes_and_aiortc_receives(
    page: browser.Browser, client: SessionsClient
) -> None:
    await page.evaluate("document.getElementById('start').click(); true")
    published = await page.wait_for(
        "window.sluiceDemo.publisher && {sessionId: window.sluiceDemo.publisher.sessionId,"
        " tracks: window.sluiceDemo.publisher.tracks}"
    )
    shown = await page.evaluate("document.getElementById('pub-session').textContent")
    assert shown == published["sessionId"]
    by_kind = {t["kind"]: t["trackName"] for t in published["tracks"]}
    assert set(by_kind) == {"audio", "video"}

    audio = await client.pull(published["sessionId"], by_kind["audio"], kind="audio")
    video = await client.pull(published["sessionId"], by_kind["video"])
    frame = await asyncio.wait_for(video.recv(), timeout=15)
    assert (frame.width, frame.height) == (640, 480)
    samples = await asyncio.wait_for(collect_audio(audio, 2.0), timeout=15)
    assert np.abs(samples.astype(np.int32)).max() > 1000, "the fake microphone beeps"


async def test_browser_pulls_with_its_own_offer(
    page: browser.Browser, client: SessionsClient
) -> None:
    publisher = await client.new_peer()
    await publisher.publish([ColourTrack((30, 90, 230)), ToneTrack(440.0)], ["cam", "mic"])
    for name in ("cam", "mic"):
        await page.evaluate(
            f"document.getElementById('pull-session').value = {json.dumps(publisher.session_id)};"
            f"document.getElementById('pull-track').value = {json.dumps(name)};"
            "document.getElementById('pull').click(); true"
        )
        await page.wait_for(f"window.sluiceDemo.pulls.length === {1 if name == 'cam' else 2}")
    assert await page.evaluate("document.getElementById('pull-error').textContent") == ""

    await page.wait_for(
        "(() => { const v = window.sluiceDemo.pulls[0].media;"
        " return v.videoWidth > 0 && v.currentTime > 0.3; })()"
    )
    rgb = await page.evaluate(
        """(() => {
          const v = window.sluiceDemo.pulls[0].media;
          const c = document.createElement('canvas'); c.width = 64; c.height = 48;
          const g = c.getContext('2d'); g.drawImage(v, 0, 0, 64, 48);
          const d = g.getImageData(0, 0, 64, 48).data; const s = [0, 0, 0];
          for (let i = 0; i < d.length; i += 4) { s[0] += d[i]; s[1] += d[i+1]; s[2] += d[i+2]; }
          return s.map((x) => x / (d.length / 4));
        })()"""
    )
    assert close_to(rgb, (30, 90, 230), tolerance=50), rgb
    audio_in = await page.wait_for(
        """window.sluiceDemo.pulls[1].pc.getStats().then((stats) => {
          for (const s of stats.values()) {
            if (s.type === 'inbound-rtp' && s.kind === 'audio' && s.totalSamplesReceived > 48000)
              return s.totalSamplesReceived;
          }
          return 0;
        })"""
    )
    assert audio_in > 48_000
