"""JPEG egress end to end: a colour-cycling publisher, ~1 JPEG a second at the endpoint."""

from __future__ import annotations

import asyncio
import fractions
import itertools
import time
from pathlib import Path

import av
import numpy as np
import pytest

from sluice.wire.packet_pb2 import Packet
from tests.integration.helpers import APP, SECRET, Stack, egress_item, endpoint
from tests.integration.video import (
    COLOURS,
    ColourCycleTrack,
    colour_index,
    decode_jpeg,
    explained_by_one_phase,
)
from tests.sfu import browser
from tests.sfu.encoded_video import encode_colour
from tests.sfu.media import PacketLoopTrack

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("codec", ["VP8", "H264"])
async def test_colour_snapshots(stack: Stack, codec: str) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(ColourCycleTrack(640, 480), "cam", codec=codec)
    async with endpoint() as ep, stack.client() as client:
        started = time.monotonic()
        resp = await client.post(
            "/adapters/websocket/new",
            json={"tracks": [egress_item(ep.url, session_id, "cam", codec="jpeg")]},
        )
        assert resp.status_code == 200, resp.text
        (conn,) = await ep.wait_connections(1)
        await asyncio.wait_for(conn.got_message.wait(), 5)
        first_after = time.monotonic() - started
        await asyncio.sleep(6.0)
        got = [Packet.FromString(m) for m in conn.messages if isinstance(m, bytes)]
        await sessions.close()
    sizes = [len(p.payload) for p in got]
    print(
        f"{codec}: first JPEG {first_after * 1000:.0f} ms after create; {len(got)} JPEGs "
        f"in 6 s; sizes {min(sizes)}-{max(sizes)} bytes"
    )
    assert 4 <= len(got) <= 8
    assert got[0].timestamp == 0
    images = [decode_jpeg(p.payload) for p in got]
    assert all(image.shape == (480, 640, 3) for image in images)
    times = [p.timestamp / 90_000 for p in got]
    assert all(b > a for a, b in itertools.pairwise(times))
    assert explained_by_one_phase(times, [colour_index(i) for i in images])


async def test_jpeg_on_an_audio_track_is_400(stack: Stack) -> None:
    from tests.integration.audio import StereoToneTrack

    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 440), "mic")
    try:
        async with stack.client() as client:
            resp = await client.post(
                "/adapters/websocket/new",
                json={"tracks": [egress_item("ws://127.0.0.1:9/", session_id, "mic", "jpeg")]},
            )
        assert (resp.status_code, resp.json()["errorCode"]) == (400, "invalid_params")
    finally:
        await sessions.close()


@pytest.mark.skipif(not browser.available(), reason="/usr/bin/chromium is not installed")
async def test_chromium_camera_to_jpeg(stack: Stack, tmp_path: Path) -> None:
    page = await browser.Browser.launch(f"{stack.base_url}/", tmp_path / "profile")
    try:
        await page.wait_for("document.readyState === 'complete' && !!window.sluiceDemo")
        await page.evaluate(
            f"document.getElementById('app-id').value = '{APP}';"
            f"document.getElementById('app-secret').value = '{SECRET}'; true"
        )
        await page.evaluate("document.getElementById('start').click(); true")
        published = await page.wait_for(
            "window.sluiceDemo.publisher && {sessionId: window.sluiceDemo.publisher.sessionId,"
            " tracks: window.sluiceDemo.publisher.tracks}"
        )
        camera = next(t["trackName"] for t in published["tracks"] if t["kind"] == "video")
        async with endpoint() as ep, stack.client() as client:
            resp = await client.post(
                "/adapters/websocket/new",
                json={"tracks": [egress_item(ep.url, published["sessionId"], camera, "jpeg")]},
            )
            assert resp.status_code == 200, resp.text
            (conn,) = await ep.wait_connections(1)
            await asyncio.sleep(3.0)
            got = [Packet.FromString(m) for m in conn.messages if isinstance(m, bytes)]
    finally:
        await page.close()
    print(f"chromium camera: {len(got)} JPEGs in 3 s, {[len(p.payload) for p in got]} bytes")
    assert 2 <= len(got) <= 5
    assert all(decode_jpeg(p.payload).shape == (480, 640, 3) for p in got)


async def test_resolution_change_mid_stream(stack: Stack) -> None:
    sessions = stack.sessions()
    track = ColourCycleTrack(640, 480, switch_to=(320, 240))
    session_id, _ = await sessions.publish(track, "cam")
    async with endpoint() as ep, stack.client() as client:
        resp = await client.post(
            "/adapters/websocket/new",
            json={"tracks": [egress_item(ep.url, session_id, "cam", codec="jpeg")]},
        )
        assert resp.status_code == 200, resp.text
        (conn,) = await ep.wait_connections(1)
        await asyncio.sleep(5.0)
        got = [Packet.FromString(m) for m in conn.messages if isinstance(m, bytes)]
        await sessions.close()
    shapes = [decode_jpeg(p.payload).shape[:2] for p in got]
    print(f"sizes seen: {shapes}")
    assert shapes[0] == (480, 640)
    assert shapes[-1] == (240, 320)
    assert set(shapes) == {(480, 640), (240, 320)}


async def test_reconnect_sends_the_latest_jpeg_first(stack: Stack) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(ColourCycleTrack(320, 240), "cam")
    async with endpoint() as ep, stack.client() as client:
        resp = await client.post(
            "/adapters/websocket/new",
            json={"tracks": [egress_item(ep.url, session_id, "cam", codec="jpeg")]},
        )
        adapter_id = resp.json()["tracks"][0]["adapterId"]
        (first,) = await ep.wait_connections(1)
        await asyncio.sleep(1.5)
        ep.reject_status = 503
        assert first.ws is not None
        first.ws.transport.abort()
        await asyncio.sleep(2.5)  # two or three snapshots happen while away
        ep.reject_status = None
        second = (await ep.wait_connections(2, timeout_s=3))[1]
        await asyncio.wait_for(second.got_message.wait(), 2)
        deadline = time.monotonic() + 5  # the drops reach the view with a heartbeat
        while True:
            view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
            if view["counters"].get("dropped", 0) >= 1 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        await sessions.close()
    before = [Packet.FromString(m) for m in first.messages if isinstance(m, bytes)]
    after = [Packet.FromString(m) for m in second.messages if isinstance(m, bytes)]
    print(
        f"before {len(before)}, after {len(after)}, dropped while away "
        f"{view['counters']['dropped']}"
    )
    assert after, "nothing sent after the reconnect"
    # Only the newest JPEG was kept: it came at once, the older ones were dropped.
    assert view["counters"]["dropped"] >= 1
    assert after[0].timestamp - before[-1].timestamp >= 2 * 90_000


def encode_vp8(width: int, height: int, frames: int) -> list[bytes]:
    """Real VP8 frames of a moving gradient, one keyframe at the start."""
    codec = av.CodecContext.create("libvpx", "w")
    codec.width, codec.height = width, height
    codec.pix_fmt = "yuv420p"
    codec.time_base = fractions.Fraction(1, 30)
    codec.bit_rate = 4_000_000
    codec.gop_size = frames
    codec.options = {"deadline": "realtime", "lag-in-frames": "0", "cpu-used": "8"}
    yy, xx = np.mgrid[0:height, 0:width]
    out: list[bytes] = []
    for i in range(frames):
        image = np.stack([(xx + 8 * i) % 256, (yy + 4 * i) % 256, (xx + yy) % 256], axis=-1)
        frame = av.VideoFrame.from_ndarray(image.astype(np.uint8), format="rgb24")
        frame = frame.reformat(format="yuv420p")
        frame.pts = i
        out += [bytes(p) for p in codec.encode(frame)]
    out += [bytes(p) for p in codec.encode(None)]
    return out


async def test_1080p_decoding_keeps_the_loop_responsive(stack: Stack) -> None:
    """Decoding 1080p at 30 fps happens off the event loop: its timers stay on time."""
    frames = await asyncio.to_thread(encode_vp8, 1920, 1080, 60)
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(PacketLoopTrack("video", frames, 3000, 90_000), "hd")
    async with endpoint() as ep, stack.client() as client:
        resp = await client.post(
            "/adapters/websocket/new",
            json={"tracks": [egress_item(ep.url, session_id, "hd", codec="jpeg")]},
        )
        assert resp.status_code == 200, resp.text
        adapter_id = resp.json()["tracks"][0]["adapterId"]
        (conn,) = await ep.wait_connections(1)
        await asyncio.sleep(5.0)
        view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
        got = [Packet.FromString(m) for m in conn.messages if isinstance(m, bytes)]
        await sessions.close()
    lag = view["counters"]["maxLoopLagMs"]
    print(
        f"1080p: {len(got)} JPEGs, {[len(p.payload) // 1024 for p in got]} KiB, "
        f"worst loop lag {lag} ms, skipped {view['counters']['skipped']}"
    )
    assert len(got) >= 3
    assert decode_jpeg(got[-1].payload).shape == (1080, 1920, 3)


@pytest.mark.parametrize("codec", ["VP9", "H265"])
async def test_colour_snapshots_from_vp9_and_h265(stack: Stack, codec: str) -> None:
    """VP9 from libvpx-vp9, H.265 from libx265 (PyAV), sent through our packetizers."""
    frames: list[bytes] = []
    for rgb in COLOURS:  # one second of each colour, a keyframe at each change
        frames += await asyncio.to_thread(encode_colour, codec, rgb, 30, 30)
    sessions = stack.sessions()
    track = PacketLoopTrack("video", frames, 3000, 90_000)
    session_id, _ = await sessions.publish(track, "cam", codec=codec)
    async with endpoint() as ep, stack.client() as client:
        resp = await client.post(
            "/adapters/websocket/new",
            json={"tracks": [egress_item(ep.url, session_id, "cam", codec="jpeg")]},
        )
        assert resp.status_code == 200, resp.text
        (conn,) = await ep.wait_connections(1)
        await asyncio.sleep(6.0)
        got = [Packet.FromString(m) for m in conn.messages if isinstance(m, bytes)]
        await sessions.close()
    print(f"{codec}: {len(got)} JPEGs in 6 s, {[len(p.payload) for p in got]} bytes")
    assert 4 <= len(got) <= 8
    images = [decode_jpeg(p.payload) for p in got]
    assert all(image.shape == (240, 320, 3) for image in images)
    times = [p.timestamp / 90_000 for p in got]
    assert explained_by_one_phase(times, [colour_index(i) for i in images])
