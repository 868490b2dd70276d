"""The demo page in headless Chromium against a real development-mode stack.

The page publishes the fake camera and microphone, has Sluice send them to the API's
built-in viewer over WebSockets (JPEG + PCM), then has Sluice speak on a new track,
and closes every adapter it made.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.integration.helpers import Stack
from tests.sfu import browser

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not browser.available(), reason="/usr/bin/chromium is not installed"),
]

STATE = "window.sluiceDemo.ws"
HEARD_DBFS = -50.0  # well above the -120 of silence; the fake microphone beeps, speak speaks


def click(button: str) -> str:
    return f"document.getElementById({button!r}).click(); true"


@pytest.fixture
async def page(stack: Stack, tmp_path: Path) -> AsyncIterator[browser.Browser]:
    b = await browser.Browser.launch(f"{stack.base_url}/", tmp_path / "profile")
    try:
        await b.wait_for("document.readyState === 'complete' && !!window.sluiceDemo")
        yield b
    finally:
        await b.close()


@pytest.mark.workers(3, dev=1)
async def test_the_page_sends_its_tracks_hears_sluice_speak_and_stops(
    stack: Stack, page: browser.Browser
) -> None:
    began = time.monotonic()
    # Development mode fills in the demo app; the page uses it as it is.
    assert await page.evaluate("document.getElementById('app-id').value") == "demo"
    await page.evaluate(click("start"))
    await page.wait_for("!!window.sluiceDemo.publisher")

    await page.evaluate(click("send-ws"))
    await page.wait_for(
        f"{STATE}.adapters.length === 2 || !!document.getElementById('ws-error').textContent"
    )
    assert await page.evaluate("document.getElementById('ws-error').textContent") == ""
    await page.wait_for(f"{STATE}.snapshots >= 2", within_s=20)
    await page.wait_for(f"{STATE}.maxEgressDbfs > {HEARD_DBFS}", within_s=10)
    shown = await page.evaluate(
        "(() => { const i = document.getElementById('snapshot');"
        " return [i.naturalWidth, i.naturalHeight,"
        " document.getElementById('snap-count').textContent]; })()"
    )
    assert shown[:2] == [640, 480]
    assert int(shown[2]) >= 2
    sent_at = time.monotonic()

    await page.evaluate(click("speak"))
    await page.wait_for(f"!!{STATE}.speak || !!document.getElementById('ws-error').textContent")
    assert await page.evaluate("document.getElementById('ws-error').textContent") == ""
    await page.wait_for(f"{STATE}.maxSpeakDbfs > {HEARD_DBFS}", within_s=20)
    heard_at = time.monotonic()

    ids = await page.evaluate(f"{STATE}.adapters.map((a) => a.adapterId)")
    roles = await page.evaluate(f"{STATE}.adapters.map((a) => a.role)")
    assert sorted(roles) == ["jpeg", "pcm", "speak"]
    await page.evaluate(click("stop-ws"))
    await page.wait_for(f"!!{STATE}.closed && {STATE}.adapters.length === 0")
    assert await page.evaluate("document.getElementById('ws-error').textContent") == ""

    async with stack.client(secret="demo", app="demo") as api:
        for adapter_id in ids:
            view = (await api.get(f"/adapters/websocket/{adapter_id}")).json()
            assert view["state"] == "closed", view
            assert view["closeReason"] == "api_close", view
    levels = await page.evaluate(f"[{STATE}.maxEgressDbfs, {STATE}.maxSpeakDbfs]")
    print(
        f"loudest: microphone {levels[0]:.1f} dBFS, speech {levels[1]:.1f} dBFS; "
        f"snapshots after {sent_at - began:.1f} s, speech heard after "
        f"{heard_at - sent_at:.1f} s more, {time.monotonic() - began:.1f} s in all"
    )
