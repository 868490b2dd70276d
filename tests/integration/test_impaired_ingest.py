"""Ingest to a subscriber behind an impaired link: its audio holds, the adapter never notices.

The endpoint pushes a real-time 440/660 Hz tone into an ingest adapter; two subscribers
pull its track, one straight from the SFU and one across a seeded relay that loses 5 %
of the media and jitters it by 30 ± 20 ms (reordering), its RTCP too. The impaired
subscriber's frames are tapped as they arrive and put in order by timestamp: it must
get every frame the network let through (what a browser's jitter buffer then conceals),
a pure tone; the adapter must count exactly what the endpoint sent and stay active.
(aiortc's own receiver would judge aiortc: under this loss and reordering together it
missed ~20 % of the frames of a 6 s run, four times what the relay dropped.)
`NETSIM_SECONDS=20 pytest -s tests/integration/test_impaired_ingest.py` for a longer run.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any, cast

import av
import numpy as np
import pytest

from bench.impaired_figures import FREQS, AudioRow
from sluice.media.aiortc_internals import FrameDecoder
from sluice.media.types import EncodedFrame
from sluice.wire.packet import encode
from tests.integration.audio import RATE, Recording, tone_pcm
from tests.integration.helpers import Stack, endpoint, ingest_item
from tests.netsim import Impairment, UdpRelay, pull_via_relay

pytestmark = [pytest.mark.integration, pytest.mark.timeout(90)]

SECONDS = float(os.environ.get("NETSIM_SECONDS", "6"))
SEED = int(os.environ.get("NETSIM_SEED", "5"))
LINK = Impairment(loss=0.05, delay_ms=30, jitter_ms=20)
CHUNK_S = 0.1  # the endpoint sends 100 ms of PCM at a time, in real time


def row(recording: Recording) -> AudioRow:
    """The figures of the clean subscriber's tone (its loud frames)."""
    frames = [
        (arrival, pts, chunk.tobytes())
        for arrival, pts, chunk in zip(
            recording.arrivals, recording.pts, recording.chunks, strict=True
        )
    ]
    loud = [f for f, is_loud in zip(frames, recording.loud_frames(), strict=False) if is_loud]
    return AudioRow.of(loud)


def tapped_row(tapped: list[EncodedFrame]) -> AudioRow:
    """The figures of tapped frames put in order (duplicates dropped), then decoded."""
    in_order = sorted({f.timestamp: f for f in tapped}.values(), key=lambda f: f.timestamp)
    decoder = FrameDecoder(in_order[0].codec)
    frames = []
    for frame in in_order:
        for decoded in decoder.decode(frame, frame.timestamp):
            pcm = cast(av.AudioFrame, decoded).to_ndarray()
            if np.sqrt(np.mean(pcm.astype(np.float64) ** 2)) > 2_000:  # the tone, not silence
                frames.append((frame.received_at, frame.timestamp, pcm.tobytes()))
    return AudioRow.of(frames)


async def test_a_subscriber_behind_a_lossy_jittery_link(stack: Stack) -> None:
    pcm = tone_pcm(*FREQS, SECONDS)
    chunk = int(CHUNK_S * RATE) * 4
    streaming = asyncio.Event()
    sent: list[int] = []

    async def push(ws: Any) -> None:
        await streaming.wait()
        started = time.monotonic()
        for n, offset in enumerate(range(0, len(pcm), chunk)):
            await asyncio.sleep(max(0.0, started + n * CHUNK_S - time.monotonic()))
            message = encode(n, n * int(CHUNK_S * RATE), pcm[offset : offset + chunk])
            await ws.send(message)
            sent.append(len(message))
        await ws.wait_closed()  # stay connected: the adapter stays active

    clean, tapped = Recording(), []  # tapped: EncodedFrame of the impaired subscriber
    relay: UdpRelay | None = None
    sessions = stack.sessions()
    tasks: list[asyncio.Task[None]] = []
    try:
        async with endpoint() as ep, stack.client() as client:
            ep.on_connect = push
            resp = await client.post(
                "/adapters/websocket/new", json={"tracks": [ingest_item(ep.url)]}
            )
            assert resp.status_code == 200, resp.text
            track = resp.json()["tracks"][0]
            plain = await sessions.pull(track["sessionId"], "tts", kind="audio")
            behind, relay = await pull_via_relay(
                sessions, track["sessionId"], "tts", "audio", upstream=LINK, downstream=LINK,
                seed=SEED, on_frame=tapped.append,
            )  # fmt: skip
            del behind  # tapped: its track only reports the end
            tasks = [asyncio.create_task(clean.record(plain))]
            await asyncio.wait_for(clean.first_frame.wait(), 10)
            streaming.set()
            await asyncio.sleep(SECONDS + 1.0)
            view = (await client.get(f"/adapters/websocket/{track['adapterId']}")).json()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await sessions.close()
        if relay is not None:
            relay.close()
    down = relay.downstream.stats
    got = {"clean": row(clean), "impaired": tapped_row(tapped)}
    print(f"relay: {down.datagrams} datagrams to the subscriber, {down.lost} lost, "
          f"{down.reordered} reordered; adapter {view['state']}, {view['counters']}")  # fmt: skip
    for name, figures in got.items():
        print(f"{name}: {figures}")
    assert down.lost >= 5 and down.reordered >= 5
    assert view["state"] == "active", view
    counters = view["counters"]
    assert (counters["packets"], counters["bytes"]) == (len(sent), sum(sent)), counters
    assert counters.get("reconnects", 0) == 0
    seen, network_loss_pct = got["impaired"], 100 * down.lost / down.datagrams
    # Every frame the network let through reached the subscriber: what it misses beyond
    # the clean one (a starved machine's underrun shows in both) is what the relay
    # dropped (RTCP shares its datagrams).
    assert seen.missing_pct <= got["clean"].missing_pct + network_loss_pct + 2
    assert seen.frames >= 0.85 * got["clean"].frames
    assert min(seen.purity_left, seen.purity_right) >= 80
    assert seen.latency_growth_ms <= 100
