"""Real headless Chromium with the demo page: it publishes to aiortc, and pulls from it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
from aiortc import RTCSessionDescription

from sluice.media.aiortc_internals import on_keyframe_request
from sluice.media.calls_client import SessionsClient
from sluice.media.ice import rtc_configuration
from sluice.media.types import EncodedFrame
from tests.sfu import browser
from tests.sfu.conftest import LOOPBACK, Server
from tests.sfu.encoded_video import EncoderTrack, decode_all, prefer
from tests.sfu.media import ColourTrack, ToneTrack, close_to, collect_audio
from tests.sfu.peers import wait_for

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


# Publishes the fake camera offering VP9 profile 0 only, with the demo page's `api()`.
PUBLISH_VP9 = """(async () => {
  const stream = await navigator.mediaDevices.getUserMedia({video: {width: 640, height: 480}});
  const pc = newPeerConnection();
  const t = pc.addTransceiver(stream.getVideoTracks()[0], {direction: "sendonly"});
  const codecs = RTCRtpSender.getCapabilities("video").codecs;
  t.setCodecPreferences(codecs.filter((c) => c.mimeType === "video/rtx" ||
    (c.mimeType === "video/VP9" && (c.sdpFmtpLine || "").includes("profile-id=0"))));
  const {sessionId} = await api("POST", "/new");
  await pc.setLocalDescription(await pc.createOffer());
  const result = await api("POST", `/${sessionId}/tracks/new`, {
    sessionDescription: {type: "offer", sdp: pc.localDescription.sdp},
    tracks: [{location: "local", mid: t.mid, trackName: "vp9-cam"}],
  });
  await pc.setRemoteDescription(result.sessionDescription);
  window.vp9 = {pc, sessionId};
  return sessionId;
})()"""

SENT_CODEC = """window.vp9.pc.getStats().then((stats) => {
  for (const s of stats.values()) {
    if (s.type === "outbound-rtp" && s.framesEncoded > 10) return stats.get(s.codecId).mimeType;
  }
  return null;
})"""


async def test_browser_publishes_vp9_and_aiortc_receives_it(
    page: browser.Browser, client: SessionsClient
) -> None:
    session_id = await page.evaluate(PUBLISH_VP9)
    assert await page.wait_for(SENT_CODEC) == "video/VP9"
    got: list[EncodedFrame] = []
    await client.pull(session_id, "vp9-cam", kind="video", on_frame=got.append)
    await wait_for(lambda: len(got) >= 30, within=20)
    assert {f.codec.name for f in got} == {"VP9"}
    assert got[0].keyframe
    pictures = decode_all("VP9", [f.data for f in got])
    assert len(pictures) == len(got)
    assert (pictures[-1].width, pictures[-1].height) == (640, 480)


async def test_browser_decodes_vp9_packed_by_the_sfu(
    page: browser.Browser, client: SessionsClient
) -> None:
    """aiortc packs VP9 (this project's packetizer) for libwebrtc's depacketizer."""
    publisher = await client.new_peer()
    track = EncoderTrack("VP9", (30, 90, 230))
    transceiver = publisher.pc.addTransceiver(track, direction="sendonly")
    prefer(transceiver, "VP9")
    on_keyframe_request(transceiver.sender, track.request_keyframe)
    await publisher.pc.setLocalDescription(await publisher.pc.createOffer())
    answer = await client.call(
        "POST",
        f"/{publisher.session_id}/tracks/new",
        {
            "sessionDescription": {"type": "offer", "sdp": publisher.pc.localDescription.sdp},
            "tracks": [{"location": "local", "mid": transceiver.mid, "trackName": "cam"}],
        },
    )
    await publisher.pc.setRemoteDescription(RTCSessionDescription(**answer["sessionDescription"]))
    await page.evaluate(
        f"document.getElementById('pull-session').value = {json.dumps(publisher.session_id)};"
        "document.getElementById('pull-track').value = 'cam';"
        "document.getElementById('pull').click(); true"
    )
    decoded = await page.wait_for(
        """window.sluiceDemo.pulls.length && window.sluiceDemo.pulls[0].pc.getStats().then((r) => {
          for (const s of r.values()) {
            if (s.type === "inbound-rtp" && s.framesDecoded > 30)
              return {codec: r.get(s.codecId).mimeType, width: s.frameWidth};
          }
          return null;
        })"""
    )
    assert decoded == {"codec": "video/VP9", "width": 320}
