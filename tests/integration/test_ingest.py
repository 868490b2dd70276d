"""Ingest end to end: an endpoint pushes PCM, a WebRTC subscriber hears it in real time."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import numpy as np
import pytest

from sluice.wire.packet import encode
from tests.integration.audio import FRAME, RATE, Recording, dominant_frequency, tone_pcm
from tests.integration.helpers import Stack, endpoint, ingest_item

pytestmark = pytest.mark.integration
CHUNK = 16_384  # what endpoints written for Cloudflare's service send, unpaced


async def create_and_subscribe(stack: Stack, ep_url: str, recording: Recording):  # type: ignore[no-untyped-def]
    async with stack.client() as client:
        resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep_url)]})
    assert resp.status_code == 200, resp.text
    track = resp.json()["tracks"][0]
    sessions = stack.sessions()
    remote = await sessions.pull(track["sessionId"], "tts", kind="audio")
    task = asyncio.create_task(recording.record(remote))
    await asyncio.wait_for(recording.first_frame.wait(), 10)  # silence flows: the track is live
    return track["adapterId"], sessions, task


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def check_tone(recording: Recording, seconds: float) -> None:
    first, last = recording.tone_span()
    assert first >= 0, "no tone arrived"
    loud = recording.loud_frames()[first : last + 1]
    duration = (last - first + 1) * FRAME / RATE
    print(f"tone lasted {duration:.3f} s; silent blocks inside it: {int((~loud).sum())}")
    assert abs(duration - seconds) <= 0.05 * seconds
    assert loud.all(), "dropout inside the tone"
    left = recording.stereo[first * FRAME : (last + 1) * FRAME, 0].astype(np.float64)
    assert abs(dominant_frequency(left) - 440) < 5


@pytest.mark.parametrize("paced", [False, True], ids=["burst", "real-time"])
async def test_tone_plays_out_at_natural_speed(stack: Stack, paced: bool) -> None:
    pcm = tone_pcm(440, 440, 3.0)
    ready = asyncio.Event()
    sent_at: list[float] = []

    async def push(ws):  # type: ignore[no-untyped-def]
        await ready.wait()
        started = time.monotonic()
        for offset in range(0, len(pcm), CHUNK):
            chunk = pcm[offset : offset + CHUNK]
            if paced:  # a sender keeping to real time, one chunk per its duration
                await asyncio.sleep(max(0.0, started + offset / (RATE * 4) - time.monotonic()))
            await ws.send(encode(0, 0, chunk))
            sent_at.append(time.monotonic())
        await ws.send(b"")  # end of segment: a zero-length message is an empty Packet

    recording = Recording()
    async with endpoint() as ep:
        ep.on_connect = push
        adapter_id, sessions, task = await create_and_subscribe(stack, ep.url, recording)
        ready.set()
        await asyncio.sleep(4.5)
        task.cancel()
        await sessions.close()
        check_tone(recording, 3.0)
        async with stack.client() as client:
            view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
        assert view["state"] == "active"
        assert view["counters"]["packets"] == len(sent_at) + 1
        assert view["counters"]["bytes"] > len(pcm)
        if not paced:
            assert view["counters"]["maxBufferMs"] >= 2_500  # the burst was buffered
        if not paced:
            assert view["counters"]["underruns"] == 0
        # A sender at exactly real time leaves no slack: its first chunk may land a tick
        # late (counted), but no gap may show inside the tone (checked above).
        print(f"underruns: {view['counters']['underruns']}")


async def test_endpoint_close_plays_out_the_buffer_then_ends_the_track(stack: Stack) -> None:
    pcm = tone_pcm(440, 440, 1.0)
    ready = asyncio.Event()

    async def push_and_leave(ws):  # type: ignore[no-untyped-def]
        await ready.wait()
        for offset in range(0, len(pcm), CHUNK):
            await ws.send(encode(0, 0, pcm[offset : offset + CHUNK]))
        await ws.close()

    recording = Recording()
    async with endpoint() as ep:
        ep.on_connect = push_and_leave
        adapter_id, sessions, task = await create_and_subscribe(stack, ep.url, recording)
        ready.set()
        await asyncio.wait_for(task, 8)  # the subscriber's track ends by itself
        await sessions.close()
        check_tone(recording, 1.0)
        async with stack.client() as client:
            view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
        assert (view["state"], view["closeReason"]) == ("closed", "endpoint_closed")


@pytest.mark.workers(2, ingest_buffer_s=1.0)
async def test_back_pressure_bounds_the_buffer(stack: Stack) -> None:
    """A 60 s burst into a 1 s buffer: the endpoint is held back by TCP, nothing dropped,
    and the pipeline's memory stays flat."""
    pcm = tone_pcm(440, 440, 60.0)
    progress: list[tuple[float, int]] = []

    async def push(ws):  # type: ignore[no-untyped-def]
        for offset in range(0, len(pcm), CHUNK):
            await ws.send(encode(0, 0, pcm[offset : offset + CHUNK]))
            progress.append((time.monotonic(), offset + CHUNK))

    async with endpoint() as ep, stack.client() as client:
        ep.on_connect = push
        started = time.monotonic()
        resp = await client.post("/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]})
        adapter_id = resp.json()["tracks"][0]["adapterId"]
        pid = stack.pipeline_pid(adapter_id)
        await asyncio.sleep(1.0)
        rss_before = rss_kib(pid)
        await asyncio.sleep(2.0)
        elapsed = time.monotonic() - started
        sent = progress[-1][1] if progress else 0
        rss_growth = rss_kib(pid) - rss_before
        # Taken: at most the buffer (1 s), what played (elapsed) and what the sockets hold
        # (our capped receive buffer, websockets' queue, the test's own send buffer).
        played_and_buffered = (elapsed + 1.2) * RATE * 4
        socket_slack = 6 * 1024 * 1024
        print(
            f"after {elapsed:.1f} s the endpoint got {sent / (RATE * 4):.1f} s of audio out; "
            f"pipeline RSS grew {rss_growth} KiB in the last 2 s"
        )
        assert rss_growth < 8 * 1024
        assert sent < len(pcm), "the sender was never held back"
        assert sent <= played_and_buffered + socket_slack
        await asyncio.sleep(1.2)
        view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
        assert view["counters"]["maxBufferMs"] <= 1_000 + 9 * 20
        assert view["counters"]["dropped"] == 0
        await client.post("/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]})
