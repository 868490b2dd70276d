"""`record` against the real stack: egress audio to a WAV, egress JPEGs to files."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from websockets.asyncio.server import ServerConnection

from examples.endpoint import open_server
from examples.record import Recorder
from sluice.wire.packet import DecodedPacket as Packet
from tests.examples.util import close, create, read_wav, wait
from tests.integration.audio import StereoToneTrack, dominant_frequency
from tests.integration.helpers import Stack, egress_item
from tests.integration.video import ColourCycleTrack, decode_jpeg

pytestmark = pytest.mark.integration


class TappedRecorder(Recorder):
    """Keeps each connection, so a test can drop one."""

    def __init__(self, out_dir: Path, on_packet: Callable[[str, Packet], None]) -> None:
        super().__init__(out_dir, on_packet)
        self.connections: list[ServerConnection] = []
        self.reconnected = asyncio.Event()

    async def handle(self, ws: ServerConnection) -> None:
        self.connections.append(ws)
        if len(self.connections) > 1:
            self.reconnected.set()
        await super().handle(ws)


async def test_audio_goes_to_a_wav_of_the_right_length_and_pitch(
    stack: Stack, tmp_path: Path
) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 660), "mic")
    arrivals: list[float] = []
    arrived = asyncio.Event()

    def on_packet(_key: str, _packet: Packet) -> None:
        arrivals.append(time.monotonic())
        arrived.set()

    recorder = Recorder(tmp_path / "out", on_packet)
    try:
        async with open_server(recorder, "127.0.0.1", 0) as url:
            item = await create(stack, egress_item(f"{url}/mic", session_id))
            await wait(arrived)
            await asyncio.sleep(3.0)
            await close(stack, item["adapterId"])
            closed_at = time.monotonic()
            await wait(recorder.ended)  # the adapter's 1000 ends the take
    finally:
        await sessions.close()
    (take,) = recorder.finished
    assert take.path == tmp_path / "out" / "mic.wav"
    rate, audio = read_wav(take.path)
    seconds = len(audio) / rate
    print(f"recorded {seconds:.2f} s over {closed_at - arrivals[0]:.2f} s of wall time")
    assert (rate, audio.shape[1]) == (48_000, 2)
    assert abs(seconds - 0.02 * len(arrivals)) < 0.1  # a Packet is 20 ms; no gap to fill
    assert 2.8 <= seconds <= closed_at - arrivals[0] + 0.3
    assert abs(dominant_frequency(audio[4800:, 0]) - 440) < 5
    assert abs(dominant_frequency(audio[4800:, 1]) - 660) < 5


async def test_a_reconnect_appends_to_the_same_wav(stack: Stack, tmp_path: Path) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 440), "mic")
    packets: list[Packet] = []
    one_second = asyncio.Event()
    started = 0.0

    def on_packet(_key: str, packet: Packet) -> None:
        nonlocal started
        started = started or time.monotonic()
        packets.append(packet)
        if len(packets) == 50:
            one_second.set()

    recorder = TappedRecorder(tmp_path / "out", on_packet)
    try:
        async with open_server(recorder, "127.0.0.1", 0) as url:
            item = await create(stack, egress_item(f"{url}/mic", session_id))
            await wait(one_second)
            recorder.connections[0].transport.abort()  # dropped, no close frame: Sluice re-dials
            await wait(recorder.reconnected)
            await asyncio.sleep(2.0)
            await close(stack, item["adapterId"])
            wall = time.monotonic() - started
            await wait(recorder.ended)
    finally:
        await sessions.close()
    assert [t.path.name for t in recorder.finished] == ["mic.wav"]
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["mic.wav"]
    rate, audio = read_wav(recorder.finished[0].path)
    seconds = len(audio) / rate
    sequence = [p.sequence_number for p in packets]
    print(f"{seconds:.2f} s recorded over {wall:.2f} s; sequence {sequence[0]}..{sequence[-1]}")
    assert sequence == list(range(len(sequence)))  # the backlog was flushed: nothing lost
    assert len(audio) == packets[-1].timestamp - packets[0].timestamp + 960
    assert wall - 0.5 <= seconds <= wall + 0.3
    frames = audio[4800 : len(audio) - len(audio) % 960, 0].reshape(-1, 960)
    assert (np.sqrt((frames**2).mean(axis=1)) > 2000).all(), "a gap in the recording"


async def test_jpegs_go_to_numbered_files_that_decode(stack: Stack, tmp_path: Path) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(ColourCycleTrack(320, 240), "cam")
    recorder = Recorder(tmp_path / "out")
    try:
        async with open_server(recorder, "127.0.0.1", 0) as url:
            item = await create(stack, egress_item(f"{url}/cam", session_id, "cam", "jpeg"))
            await asyncio.sleep(3.0)
            await close(stack, item["adapterId"])
            await wait(recorder.ended)
    finally:
        await sessions.close()
    files = sorted((tmp_path / "out" / "cam").iterdir())
    print(f"{len(files)} JPEGs: {[f.name for f in files]}")
    assert 2 <= len(files) <= 5
    assert [f.name for f in files] == [f"{i:06d}.jpg" for i in range(1, len(files) + 1)]
    assert all(decode_jpeg(f.read_bytes()).shape == (240, 320, 3) for f in files)
