"""Chromium publishing across the impaired relay still feeds an egress adapter.

The page (the demo page, for its `api()` and `newPeerConnection()`) offers its fake
microphone without candidates; the harness starts a relay to the SFU's candidate in the
answer and has the page apply the answer rewritten to the relay's port, so all of
Chromium's media crosses a seeded 5 % loss with 30 ± 20 ms of jitter. The egress PCM
adapter must keep its timeline whole (reordered packets put back, losses concealed).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from sluice.wire.packet_pb2 import Packet
from tests.integration.helpers import APP, SECRET, Stack, egress_item, endpoint
from tests.netsim import Impairment, UdpRelay, server_address, via_relay
from tests.netsim.measure import AudioFigures
from tests.netsim.peers import without_candidates
from tests.sfu import browser

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(90),
    pytest.mark.skipif(not browser.available(), reason="/usr/bin/chromium is not installed"),
]

LINK = Impairment(loss=0.05, delay_ms=30, jitter_ms=20)
SECONDS = 5.0

OFFER = """(async () => {
  const stream = await navigator.mediaDevices.getUserMedia({audio: true});
  const pc = newPeerConnection();
  const t = pc.addTransceiver(stream.getAudioTracks()[0], {direction: "sendonly"});
  const {sessionId} = await api("POST", "/new");
  await pc.setLocalDescription(await pc.createOffer());
  window.relayed = {pc, sessionId, mid: t.mid};
  return pc.localDescription.sdp;
})()"""

# The offer goes without candidates: the SFU can only learn Chromium from its checks,
# which all cross the relay.
PUBLISH = """(async (sdp) => {
  const {pc, sessionId, mid} = window.relayed;
  const result = await api("POST", `/${sessionId}/tracks/new`, {
    sessionDescription: {type: "offer", sdp},
    tracks: [{location: "local", mid, trackName: "mic"}],
  });
  return {sessionId, answer: result.sessionDescription.sdp};
})"""

SENT = """window.relayed.pc.getStats().then((stats) => {
  for (const s of stats.values()) {
    if (s.type === "outbound-rtp" && s.kind === "audio") return s.packetsSent;
  }
  return 0;
})"""


async def test_chromium_publishing_across_the_relay_feeds_egress(
    stack: Stack, tmp_path: Path
) -> None:
    page = await browser.Browser.launch(f"{stack.base_url}/", tmp_path / "profile")
    relay: UdpRelay | None = None
    try:
        await page.wait_for("document.readyState === 'complete' && !!window.sluiceDemo")
        await page.evaluate(
            f"document.getElementById('app-id').value = '{APP}';"
            f"document.getElementById('app-secret').value = '{SECRET}'; true"
        )
        offer = without_candidates(await page.evaluate(OFFER))
        published = await page.evaluate(f"{PUBLISH}({json.dumps(offer)})")
        answer = published["answer"]
        relay = await UdpRelay.start(server_address(answer), upstream=LINK, downstream=LINK, seed=3)
        rewritten = via_relay(answer, relay.port)
        await page.evaluate(
            "window.relayed.pc.setRemoteDescription("
            f"{{type: 'answer', sdp: {json.dumps(rewritten)}}}).then(() => true)"
        )
        await page.wait_for(f"({SENT}).then((n) => n > 50)")
        async with endpoint() as ep, stack.client() as client:
            item = egress_item(ep.url, published["sessionId"], "mic")
            resp = await client.post("/adapters/websocket/new", json={"tracks": [item]})
            assert resp.status_code == 200, resp.text
            adapter_id = resp.json()["tracks"][0]["adapterId"]
            (conn,) = await ep.wait_connections(1)
            await asyncio.sleep(SECONDS)
            view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
            got = [Packet.FromString(m) for m in conn.messages if isinstance(m, bytes)]
    finally:
        await page.close()
        if relay is not None:
            relay.close()
    got = got[25:]  # past the start-up
    fig = AudioFigures.of([p.timestamp for p in got], [p.payload for p in got], (440, 660))
    up = relay.upstream.stats
    loudest = int(np.abs(np.frombuffer(b"".join(p.payload for p in got), "<i2")).max())
    print(
        f"relay: {up.datagrams} datagrams from Chromium, {up.lost} lost, {up.reordered} "
        f"reordered; endpoint {fig.line()}, loudest {loudest}; counters {view['counters']}"
    )
    assert up.lost >= 5 and up.reordered >= 5  # the media did cross the impaired relay
    assert view["state"] == "active", view
    assert fig.per_second >= 48  # timeline: losses concealed, nothing missing
    assert (fig.small_jumps, fig.backwards) == (0, 0)
    assert view["counters"]["concealed"] >= 1
    assert loudest > 1000, "the fake microphone beeps"
