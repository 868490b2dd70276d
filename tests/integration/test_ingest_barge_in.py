"""Barge-in end to end (extensions.md E2): an endpoint queues 10 s of speech-like tone with
marks, clears it after 1 s; a WebRTC subscriber hears 1 s, then silence, and the endpoint
gets its marks back in order and on time, then `cleared`."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection

from sluice.wire.packet import encode
from tests.integration.audio import RATE, Recording, mono_tone, subscribe_to_ingest
from tests.integration.helpers import Stack, endpoint, ingest_item

pytestmark = pytest.mark.integration
SOURCE_RATE = 24_000  # what a text-to-speech service sends: 24 kHz mono PCM
MARK_EVERY_S = 0.3
CLEAR_AFTER_S = 1.0
TOLERANCE_S = 0.040


async def test_clear_after_one_second_of_ten(stack: Stack) -> None:
    pcm = mono_tone(440, SOURCE_RATE, 10.0).astype("<i2").tobytes()
    step = int(MARK_EVERY_S * SOURCE_RATE) * 2
    ready = asyncio.Event()
    answers: list[tuple[float, dict[str, Any]]] = []  # (seconds since the first send, answer)
    timeline: dict[str, float] = {}

    async def listen(ws: ServerConnection, start: float) -> None:
        async for message in ws:  # the answers: text only
            assert isinstance(message, str)
            answers.append((time.monotonic() - start, json.loads(message)))

    async def speak(ws: ServerConnection) -> None:
        await ready.wait()
        start = timeline["start"] = time.monotonic()
        listening = asyncio.create_task(listen(ws, start))
        names = []
        for offset in range(0, len(pcm), step):  # all of it at once, a mark every 0.3 s
            await ws.send(encode(0, 0, pcm[offset : offset + step]))
            if offset + step <= len(pcm):
                names.append(f"m{len(names) + 1}")
                await ws.send(json.dumps({"event": "mark", "name": names[-1]}))
        await asyncio.sleep(max(0.0, start + CLEAR_AFTER_S - time.monotonic()))
        timeline["clear"] = time.monotonic() - start
        await ws.send(json.dumps({"event": "clear"}))
        await listening

    recording = Recording()
    async with endpoint() as ep:
        ep.on_connect = speak
        item = {**ingest_item(ep.url), "sampleRate": SOURCE_RATE, "channels": 1}
        adapter_id, sessions, task = await subscribe_to_ingest(stack, item, recording)
        await asyncio.sleep(0.5)  # the track runs on silence for a while
        ready.set()
        await asyncio.sleep(CLEAR_AFTER_S + 2.0)
        task.cancel()
        await sessions.close()
        async with stack.client() as client:
            view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()

    # The subscriber: the tone, for as long as it played before the clear, then silence
    # (by the media timestamps of what it received).
    first, last = recording.loud_span_s()
    heard = last - first
    print(f"heard {heard:.3f} s of tone; clear sent {timeline['clear']:.3f} s after the audio")
    assert abs(heard - timeline["clear"]) <= TOLERANCE_S
    times = recording.sample_times() / RATE
    after = recording.stereo[times > last + 0.1, 0].astype(np.float64)
    assert len(after) > RATE, "too little recorded after the clear"
    assert np.abs(after).max() < 300, "sound after the clear"

    # The endpoint: marks of the audio played, in order and on time; then those the clear
    # dropped, in order, at once; then how much it dropped.
    events = [answer for _, answer in answers]
    played = [a for a in events if a["event"] == "mark" and not a["cleared"]]
    dropped = [a for a in events if a["event"] == "mark" and a["cleared"]]
    assert [a["name"] for a in played] == ["m1", "m2", "m3"]
    assert [a["name"] for a in dropped] == [f"m{n}" for n in range(4, 34)]
    assert events == [*played, *dropped, events[-1]] and events[-1]["event"] == "cleared"
    for at, answer in answers[:3]:
        due = int(answer["name"][1:]) * MARK_EVERY_S
        print(f"{answer['name']} due at {due:.3f} s, came at {at:.3f} s")
        assert abs(at - due) <= TOLERANCE_S
    assert all(abs(at - timeline["clear"]) <= TOLERANCE_S for at, _ in answers[3:])
    dropped_ms = events[-1]["droppedMs"]
    assert abs(dropped_ms - (10.0 - timeline["clear"]) * 1000) <= 60
    assert view["counters"]["clearedMs"] == dropped_ms
    assert view["counters"]["skipped"] == 0
