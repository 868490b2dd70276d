"""The demo page in headless Chromium against a real development-mode stack.

The page publishes the fake camera and microphone, has Sluice send them to the API's
built-in viewer over WebSockets (JPEG + PCM), then has Sluice speak on a new track,
closes every adapter it made (the last picture is then marked stale) and stops
publishing. Along the way it lists every API call it made, and its level meters read
"silence" or a figure in dBFS, never both.
"""

from __future__ import annotations

import re
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
LEVEL_TEXT = re.compile(r"silence|-?\d+\.\d dBFS")
# Records every text the level meters show, from the first.
WATCH_LEVELS = """(() => {
  window.levelTexts = [];
  for (const id of ["egress-dbfs", "speak-dbfs"]) {
    const node = document.getElementById(id);
    new MutationObserver(() => window.levelTexts.push(node.textContent))
      .observe(node, { childList: true, characterData: true, subtree: true });
  }
  return true;
})()"""


def click(button: str) -> str:
    return f"document.getElementById({button!r}).click(); true"


def text(element: str) -> str:
    return f"document.getElementById({element!r}).textContent"


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
    assert await page.evaluate(
        "fetch('/favicon.ico').then((r) => [r.status, r.headers.get('content-type')])"
    ) == [200, "image/x-icon"]
    await page.evaluate(WATCH_LEVELS)
    await page.evaluate(click("start"))
    await page.wait_for("!!window.sluiceDemo.publisher")
    assert await page.evaluate(text("pub-state")) == "publishing"
    publisher_session = await page.evaluate("window.sluiceDemo.publisher.sessionId")

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

    # The last picture stays, marked stale; the meters read silence.
    assert await page.evaluate("document.getElementById('snapshot').classList.contains('stale')")
    assert (await page.evaluate(text("snap-state"))).startswith("stale: the last picture")
    assert await page.evaluate(f"[{text('egress-dbfs')}, {text('speak-dbfs')}]") == [
        "silence",
        "silence",
    ]

    await page.evaluate(click("stop-publish"))
    await page.wait_for(f"{text('pub-state')}.startsWith('stopped')")
    assert await page.evaluate("document.getElementById('local').srcObject") is None
    assert await page.evaluate("document.getElementById('start').disabled") is False

    async with stack.client(secret="demo", app="demo") as api:
        for adapter_id in ids:
            view = (await api.get(f"/adapters/websocket/{adapter_id}")).json()
            assert view["state"] == "closed", view
            assert view["closeReason"] == "api_close", view
        published = await api.get(f"/sessions/{publisher_session}")
    # The tracks were closed, then the peer connection: the SFU ended the session.
    assert published.status_code == 404, published.text

    levels_shown = await page.evaluate("window.levelTexts")
    assert levels_shown and all(LEVEL_TEXT.fullmatch(shown) for shown in levels_shown), set(
        levels_shown
    )
    assert any(shown.endswith(" dBFS") for shown in levels_shown)
    await check_the_calls_shown(page, publisher_session)
    levels = await page.evaluate(f"[{STATE}.maxEgressDbfs, {STATE}.maxSpeakDbfs]")
    print(
        f"loudest: microphone {levels[0]:.1f} dBFS, speech {levels[1]:.1f} dBFS; "
        f"snapshots after {sent_at - began:.1f} s, speech heard after "
        f"{heard_at - sent_at:.1f} s more, {time.monotonic() - began:.1f} s in all"
    )


async def check_the_calls_shown(page: browser.Browser, publisher_session: str) -> None:
    """Every request the page made is listed with its body and answer, as it happened."""
    calls = await page.evaluate("window.sluiceDemo.calls")
    made = [f"{call['method']} {call['path']}" for call in calls]
    sessions = "/v1/apps/demo/sessions"
    for expected in (
        f"POST {sessions}/new",
        f"POST {sessions}/{publisher_session}/tracks/new",
        "POST /v1/apps/demo/adapters/websocket/new",
        "POST /v1/apps/demo/adapters/websocket/close",
        f"PUT {sessions}/{publisher_session}/tracks/close",
    ):
        assert expected in made, made
    assert any(m.startswith("GET /demo/endpoints?viewer=") for m in made), made
    assert any(m.startswith("WS ws://") and m.endswith("/out") for m in made), made
    creates = [c for c in calls if c["path"].endswith("/adapters/websocket/new")]
    endpoints = [t["endpoint"] for c in creates for t in c["body"]["tracks"]]
    assert any("/demo/viewer/" in e for e in endpoints) and any(
        "/demo/speak" in e for e in endpoints
    )
    assert all(t["adapterId"] for c in creates for t in c["answer"]["tracks"])
    assert all(c["status"] < 400 for c in calls if c["method"] != "WS"), calls
    [closed] = [c for c in calls if c["path"].endswith("/tracks/close")]
    assert [t["mid"] for t in closed["answer"]["tracks"]] == [
        t["mid"] for t in closed["body"]["tracks"]
    ]

    shown = await page.evaluate("document.getElementById('calls').textContent")
    entries = await page.evaluate("document.querySelectorAll('#calls details').length")
    assert entries == len(calls)
    assert "POST /v1/apps/demo/adapters/websocket/new → 200" in shown
    assert "lines of SDP" in shown  # session descriptions are shortened
    assert "Bearer demo" not in shown  # the secret is not shown
