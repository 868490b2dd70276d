"""`speak` against the real stack: it feeds an ingest adapter whose track a subscriber hears."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import wave
from pathlib import Path

import pytest

from examples.audio import RATE, float_to_pcm, pcm_to_float, read_wav, to_sluice_pcm, tone
from examples.endpoint import open_server
from examples.speak import Speaker, espeak
from tests.examples.util import close, create
from tests.integration.audio import FRAME, Recording, dominant_frequency
from tests.integration.helpers import Stack, ingest_item


@pytest.mark.integration
async def test_a_22khz_mono_wav_is_heard_by_a_subscriber(stack: Stack, tmp_path: Path) -> None:
    source = tmp_path / "tone.wav"
    with wave.open(str(source), "wb") as wav:  # not what Sluice takes: speak converts it
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(22_050)
        wav.writeframes(float_to_pcm(tone(440, 1.5, 22_050)))
    gate = asyncio.Event()
    speaker = Speaker(to_sluice_pcm(*read_wav(source)), gate=gate)
    recording = Recording()
    sessions = stack.sessions()
    try:
        async with open_server(speaker, "127.0.0.1", 0) as url:
            item = await create(stack, ingest_item(f"{url}/speak", "speech"))
            remote = await sessions.pull(item["sessionId"], "speech", kind="audio")
            task = asyncio.create_task(recording.record(remote))
            await asyncio.wait_for(recording.first_frame.wait(), 10)  # live: silence flows
            gate.set()
            await asyncio.sleep(3.0)
            await close(stack, item["adapterId"])
            task.cancel()
    finally:
        await sessions.close()
    first, last = recording.tone_span()
    assert first >= 0, "the subscriber heard nothing"
    seconds = (last - first + 1) * FRAME / RATE
    left = recording.stereo[first * FRAME : (last + 1) * FRAME, 0].astype(float)
    print(f"heard {seconds:.2f} s at {dominant_frequency(left):.1f} Hz")
    assert abs(seconds - 1.5) <= 0.08
    assert recording.loud_frames()[first : last + 1].all(), "a dropout inside the tone"
    assert abs(dominant_frequency(left) - 440) < 5


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng is not installed")
def test_say_makes_48khz_stereo_speech() -> None:
    pcm = espeak("hello world")
    speech = pcm_to_float(pcm)
    assert len(pcm) % 4 == 0
    assert 0.5 < len(speech) / RATE < 3.0
    assert abs(speech).max() > 0.1


@pytest.mark.parametrize("name", ["record", "speak", "stt_ready", "demo"])
def test_every_example_has_help(name: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", f"examples.{name}", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"python -m examples.{name}" in done.stdout
