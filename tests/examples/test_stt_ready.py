"""`stt_ready` against the real stack: egress audio arrives as 16 kHz mono."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import numpy as np
import pytest

from examples.endpoint import open_server
from examples.stt_ready import STT_RATE, SttReady
from tests.examples.util import close, create, read_wav, wait
from tests.integration.audio import StereoToneTrack
from tests.integration.helpers import Stack, egress_item

pytestmark = pytest.mark.integration


class Collecting(SttReady):
    """What a recogniser would get through `on_audio`."""

    def __init__(self, out_dir: Path, display: io.StringIO) -> None:
        super().__init__(out_dir, display)
        self.blocks: list[bytes] = []

    def on_audio(self, key: str, pcm16k: bytes) -> None:
        self.blocks.append(pcm16k)


async def test_egress_audio_becomes_16khz_mono(stack: Stack, tmp_path: Path) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 440), "mic")
    display = io.StringIO()
    endpoint = Collecting(tmp_path / "stt", display)
    try:
        async with open_server(endpoint, "127.0.0.1", 0) as url:
            item = await create(stack, egress_item(f"{url}/call", session_id))
            await asyncio.sleep(3.0)
            await close(stack, item["adapterId"])
            await wait(endpoint.ended)
    finally:
        await sessions.close()
    rate, audio = read_wav(tmp_path / "stt" / "call.wav")
    assert (rate, audio.shape[1]) == (STT_RATE, 1)
    mono = audio[1600:, 0]
    spectrum = np.abs(np.fft.rfft(mono * np.hanning(len(mono))))
    hz = float(np.fft.rfftfreq(len(mono), 1 / STT_RATE)[int(np.argmax(spectrum))])
    print(f"{len(audio) / rate:.2f} s at {hz:.1f} Hz; meter: {display.getvalue().splitlines()}")
    assert 2.7 <= len(audio) / rate <= 3.6
    assert abs(hz - 440) < 5
    assert b"".join(endpoint.blocks) == (tmp_path / "stt" / "call.wav").read_bytes()[44:]
    assert "dBFS" in display.getvalue()
