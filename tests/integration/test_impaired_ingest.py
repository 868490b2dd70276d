"""Ingest to a subscriber behind an impaired link: its audio holds, the adapter never notices.

The endpoint pushes a real-time 440/660 Hz tone into an ingest adapter; two subscribers
pull its track, one straight from the SFU and one across a seeded relay that loses 5 %
of the media and jitters it by 30 ± 20 ms (reordering), its RTCP too. The impaired
subscriber (aiortc's own receiver: a jitter buffer, no concealment) must still get
nearly every frame, in order, of a pure tone; the adapter must count exactly what the
endpoint sent and stay active, like the clean subscriber's.
`NETSIM_SECONDS=20 pytest -s tests/integration/test_impaired_ingest.py` for a longer run.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from bench.impaired_figures import FREQS, AudioRow
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
    frames = [
        (arrival, pts, chunk.tobytes())
        for arrival, pts, chunk in zip(
            recording.arrivals, recording.pts, recording.chunks, strict=True
        )
    ]
    loud = [f for f, is_loud in zip(frames, recording.loud_frames(), strict=False) if is_loud]
    return AudioRow.of(loud)


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
            await ws.send(encode(n, n * int(CHUNK_S * RATE), pcm[offset : offset + chunk]))
            sent.append(len(pcm[offset : offset + chunk]))
        await asyncio.Future()  # stay connected: the adapter stays active

    clean, impaired = Recording(), Recording()
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
                seed=SEED,
            )  # fmt: skip
            tasks = [
                asyncio.create_task(r.record(t)) for r, t in ((clean, plain), (impaired, behind))
            ]
            await asyncio.wait_for(impaired.first_frame.wait(), 10)
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
    got = {"clean": row(clean), "impaired": row(impaired)}
    print(f"relay: {down.datagrams} datagrams to the subscriber, {down.lost} lost, "
          f"{down.reordered} reordered; adapter {view['state']}, {view['counters']}")  # fmt: skip
    for name, figures in got.items():
        print(f"{name}: {figures}")
    assert down.lost >= 5 and down.reordered >= 5
    assert view["state"] == "active", view
    counters = view["counters"]
    assert (counters["packets"], counters["bytes"]) == (len(sent), sum(sent)), counters
    assert counters.get("reconnects", 0) == 0
    seen = got["impaired"]
    # aiortc does not conceal: a loss is a frame missing, never a stall or a step back.
    assert seen.backwards == 0
    assert seen.frames >= 0.85 * got["clean"].frames
    assert seen.missing_pct <= 12
    assert min(seen.purity_left, seen.purity_right) >= 80
    assert seen.latency_growth_ms <= 100
