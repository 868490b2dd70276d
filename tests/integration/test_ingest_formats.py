"""Ingest in other formats than 48 kHz stereo (extensions.md E1), end to end: an endpoint
sends 24 kHz mono PCM or 8 kHz μ-law, a WebRTC subscriber hears 48 kHz stereo at the
right pitch and for the right time."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from examples.audio import mulaw_encode
from sluice.wire.packet import encode
from tests.integration.audio import (
    FRAME,
    RATE,
    Recording,
    dominant_frequency,
    mono_tone,
    subscribe_to_ingest,
)
from tests.integration.helpers import Stack, endpoint, ingest_item

pytestmark = pytest.mark.integration
CHUNK = 16_383  # odd: every other message splits a 16-bit sample


@pytest.mark.parametrize(
    ("codec", "rate"), [("pcm", 24_000), ("mulaw", 8_000)], ids=["pcm-24k-mono", "mulaw-8k"]
)
async def test_mono_at_another_rate_is_heard_at_48k_stereo(
    stack: Stack, codec: str, rate: int
) -> None:
    samples = mono_tone(440, rate, 3.0)
    data = samples.astype("<i2").tobytes() if codec == "pcm" else mulaw_encode(samples)
    ready = asyncio.Event()

    async def push(ws):  # type: ignore[no-untyped-def]
        await ready.wait()
        for offset in range(0, len(data), CHUNK):  # unpaced, as text-to-speech sends
            await ws.send(encode(0, 0, data[offset : offset + CHUNK]))
        await ws.send(b"")  # end of segment

    recording = Recording()
    async with endpoint() as ep:
        ep.on_connect = push
        item = {**ingest_item(ep.url), "inputCodec": codec, "sampleRate": rate, "channels": 1}
        adapter_id, sessions, task = await subscribe_to_ingest(stack, item, recording)
        ready.set()
        await asyncio.sleep(4.5)
        task.cancel()
        await sessions.close()
        async with stack.client() as client:
            view = (await client.get(f"/adapters/websocket/{adapter_id}")).json()
        sent_to_endpoint = ep.connections[0].messages

    assert view["codec"] == codec
    assert view["settings"] == {
        "inputCodec": codec,
        "sampleRate": rate,
        "channels": 1,
        "framing": "packet",
    }
    assert sent_to_endpoint == []  # it asked for nothing, so it is told nothing
    first, last = recording.tone_span()
    assert first >= 0, "no tone arrived"
    loud = recording.loud_frames()[first : last + 1]
    heard_s = (last - first + 1) * FRAME / RATE
    print(f"{codec} {rate} Hz mono: heard {heard_s:.3f} s, silent blocks inside: {(~loud).sum()}")
    assert abs(heard_s - 3.0) <= 0.05 * 3.0
    assert loud.all(), "dropout inside the tone"
    tone = recording.stereo[first * FRAME : (last + 1) * FRAME].astype(np.float64)
    for channel in (0, 1):  # mono is heard on both channels
        assert abs(dominant_frequency(tone[:, channel]) - 440) < 5
    level = np.sqrt((tone**2).mean(axis=0))
    assert abs(level[0] - level[1]) < 0.05 * level[0]
    expected = 12_000 / np.sqrt(2)  # the sent tone's RMS: Opus keeps a tone's level
    assert abs(20 * np.log10(level[0] / expected)) < 1.0
