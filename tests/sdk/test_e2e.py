"""The SDK against a real Sluice stack: what the server on main speaks today
(Cloudflare-shaped pcm and jpeg egress, pcm ingest, the adapters and sessions APIs)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiortc import RTCPeerConnection, RTCSessionDescription
from websockets.asyncio.server import ServerConnection, serve

from sluice_endpoint import (
    CLOUDFLARE_JPEG,
    ApiError,
    AsyncSluiceClient,
    AudioFrame,
    EgressItem,
    EgressStream,
    Endpoint,
    Gap,
    IngestItem,
    IngestSender,
    JpegFrame,
    SessionDescription,
    SluiceClient,
    StreamItem,
    TrackRequest,
    url_of,
)
from tests.integration.audio import (
    FRAME,
    Recording,
    StereoToneTrack,
    dominant_frequency,
)
from tests.integration.helpers import APP, SECRET, Stack
from tests.integration.video import ColourCycleTrack

pytestmark = pytest.mark.integration


def api(stack: Stack) -> AsyncSluiceClient:
    return AsyncSluiceClient(f"{stack.base_url}/v1/apps/{APP}", SECRET)


async def until(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():  # noqa: ASYNC110 (polling a list other tasks append to)
            await asyncio.sleep(0.02)


class Reader:
    """An egress route that keeps everything its one stream yields."""

    def __init__(self) -> None:
        self.items: list[StreamItem] = []
        self.streams: list[EgressStream] = []
        self.ended = asyncio.Event()

    async def __call__(self, stream: EgressStream) -> None:
        self.streams.append(stream)
        async for item in stream:
            self.items.append(item)
        self.ended.set()

    def frames(self) -> list[AudioFrame]:
        return [i for i in self.items if isinstance(i, AudioFrame)]


async def test_pcm_egress_reads_one_stream_across_a_reconnect(stack: Stack) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(StereoToneTrack(440, 660), "mic")
    endpoint, reader = Endpoint(token="tok"), Reader()
    endpoint.egress("/stt")(reader)
    async with endpoint.serve() as server, api(stack) as client:
        item = EgressItem(session_id, "mic", f"{url_of(server)}/stt?token=tok")
        adapter = await client.create_adapter(item)
        assert adapter.ok and adapter.session_id == session_id and adapter.adapter_id
        await until(lambda: len(reader.frames()) >= 50, 10, "a second of audio")
        (connection,) = server.connections
        connection.transport.abort()  # the connection drops; Sluice re-dials
        await until(lambda: any(f.connection == 2 for f in reader.frames()), 10, "a reconnect")
        await until(lambda: len(reader.frames()) >= 150, 10, "more audio")
        state = await client.get_adapter(adapter.adapter_id)
        (closed,) = await client.close_adapters([adapter.adapter_id])
        await asyncio.wait_for(reader.ended.wait(), 5)
    await sessions.close()
    (stream,) = reader.streams  # one stream, one handler call, across both connections
    frames = reader.frames()
    numbers = [f.sequence_number for f in frames]
    gaps = [i for i in reader.items if isinstance(i, Gap)]
    missing = sorted(set(range(numbers[-1] + 1)) - set(numbers))
    print(f"{len(frames)} frames, {stream.repeats} repeats, gaps {gaps}, missing {missing}")
    assert numbers == sorted(set(numbers)) and numbers[0] == 0  # in order, no repeats
    assert sum(g.missing_packets for g in gaps) == len(missing)  # every loss was told
    assert stream.connections == 2 and state.counters["reconnects"] == 1
    assert (state.state, state.direction, state.codec) == ("active", "egress", "pcm")
    assert closed.ok and closed.status == "closed" and (closed.bytes_processed or 0) > 0
    assert stream.end is not None and stream.end.complete and stream.end.code == 1000
    stereo = np.concatenate([f.array() for f in frames[10:60]]).astype(np.float64)
    assert abs(dominant_frequency(stereo[:, 0]) - 440) < 5
    assert abs(dominant_frequency(stereo[:, 1]) - 660) < 5


async def test_jpeg_egress_and_api_errors(stack: Stack) -> None:
    sessions = stack.sessions()
    session_id, _ = await sessions.publish(ColourCycleTrack(320, 240), "cam")
    endpoint, reader = Endpoint(), Reader()
    endpoint.egress("/vision", CLOUDFLARE_JPEG)(reader)
    async with endpoint.serve() as server, api(stack) as client:
        url = f"{url_of(server)}/vision"
        with pytest.raises(ApiError) as unknown:
            await client.create_adapter(EgressItem("no-such-session", "cam", url, "jpeg"))
        assert (unknown.value.status, unknown.value.error_code) == (404, "not_found_session_error")
        mixed = await client.create_adapters(
            [
                EgressItem(session_id, "nope", url, "jpeg"),
                EgressItem(session_id, "cam", url, "jpeg"),
            ]
        )  # partial success: one result per item, in order
        assert [r.error_code for r in mixed] == ["not_found_track_error", None]
        await until(lambda: len(reader.items) >= 2, 10, "two JPEGs")
        await client.close_adapter(mixed[1].adapter_id or "")
        await asyncio.wait_for(reader.ended.wait(), 5)
        with pytest.raises(ApiError) as gone:
            await client.get_adapter("0" * 32)
        assert gone.value.error_code == "adapter_not_found"
    await sessions.close()
    jpegs = [i for i in reader.items if isinstance(i, JpegFrame)]
    assert len(jpegs) >= 2 and all(j.data[:2] == b"\xff\xd8" for j in jpegs)
    assert jpegs[0].timestamp == 0 and jpegs[1].timestamp > 0


async def test_ingest_sender_and_the_sessions_api(stack: Stack) -> None:
    rate = 24_000
    t = np.arange(rate) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 12_000).astype(np.int16)  # 1 s, 24 kHz mono
    endpoint, listening, sent = Endpoint(), asyncio.Event(), asyncio.Event()

    @endpoint.ingest("/tts")
    async def speak(sender: IngestSender) -> None:
        await listening.wait()  # the track plays from the dial on, like a microphone
        await sender.send(tone, sample_rate=rate, channels=1)  # resampled, made stereo
        await sender.end()
        sent.set()
        await sender.wait_closed()  # until the adapter is closed

    recording = Recording()
    async with endpoint.serve() as server, api(stack) as client:
        created = await client.create_adapter(IngestItem("tts", f"{url_of(server)}/tts"))
        assert created.session_id and created.adapter_id
        tracks = await client.get_session(created.session_id)
        assert [(t.track_name, t.location) for t in tracks] == [("tts", "local")]
        # Pull the new track with the SDK's sessions calls (client-offer flow).
        pc = RTCPeerConnection()
        transceiver = pc.addTransceiver("audio", direction="recvonly")
        await pc.setLocalDescription(await pc.createOffer())
        session = await client.new_session()
        answer = await client.add_tracks(
            session.session_id,
            [TrackRequest("remote", "tts", session_id=created.session_id)],
            SessionDescription("offer", pc.localDescription.sdp),
        )
        assert answer.session_description is not None
        assert not answer.requires_immediate_renegotiation
        await pc.setRemoteDescription(RTCSessionDescription(**answer.session_description.to_json()))
        task = asyncio.create_task(recording.record(transceiver.receiver.track))
        await asyncio.wait_for(recording.first_frame.wait(), 10)  # silence flows already
        listening.set()
        await asyncio.wait_for(sent.wait(), 10)
        await asyncio.sleep(2.0)
        # The blocking client, from a thread, as a synchronous app would use it.
        view = await asyncio.to_thread(blocking_get, stack, created.adapter_id)
        closed = await client.close_tracks(session.session_id, [transceiver.mid or ""], force=True)
        assert closed.tracks and closed.tracks[0].mid == transceiver.mid
        await client.close_adapter(created.adapter_id)
        with pytest.raises(ApiError) as missing:
            await client.get_session("no-such-session")
        assert missing.value.status == 404
    await pc.close()
    task.cancel()
    assert view["state"] == "active" and view["direction"] == "ingest"
    assert view["bytes"] >= 192_000  # 1 s of 48 kHz stereo s16le
    first, last = recording.tone_span()
    duration = (last - first + 1) * FRAME / 48_000
    left = recording.stereo[first * FRAME : (last + 1) * FRAME, 0].astype(np.float64)
    print(f"tone {duration:.2f} s at {dominant_frequency(left):.1f} Hz")
    assert abs(duration - 1.0) <= 0.1
    assert abs(dominant_frequency(left) - 440) < 5


def blocking_get(stack: Stack, adapter_id: str) -> dict[str, Any]:
    with SluiceClient(f"{stack.base_url}/v1/apps/{APP}", SECRET) as client:
        adapter = client.get_adapter(adapter_id)
    return {
        "state": adapter.state,
        "direction": adapter.direction,
        "bytes": adapter.counters.get("bytes", 0),
    }


def readme_block(marker: str) -> str:
    """The Python block that follows `<!-- marker -->` in sdk/README.md."""
    readme = (Path(__file__).resolve().parents[2] / "sdk" / "README.md").read_text()
    after = readme.split(f"<!-- {marker} -->", 1)[1]
    return after.split("```python\n", 1)[1].split("```", 1)[0]


async def test_the_readme_snippets_make_a_round_trip(stack: Stack) -> None:
    """The TTS sender's speech becomes a track; Sluice sends it to the STT bridge."""
    heard: list[bytes] = []
    listening, spoken = asyncio.Event(), asyncio.Event()

    async def recogniser(ws: ServerConnection) -> None:  # stands in for a speech-to-text API
        async for message in ws:
            heard.append(bytes(message) if isinstance(message, bytes) else b"")
            if len(heard) >= 10:
                listening.set()

    async def synthesise(text: str) -> AsyncIterator[bytes]:  # 1.5 s of 440 Hz, 24 kHz mono
        await listening.wait()  # the bridge already hears the track (silence for now)
        t = np.arange(36_000) / 24_000
        pcm = (np.sin(2 * np.pi * 440 * t) * 12_000).astype("<i2").tobytes()
        for offset in range(0, len(pcm), 9_600):
            yield pcm[offset : offset + 9_600]
        spoken.set()

    async with serve(recogniser, "127.0.0.1", 0) as stt_api:
        bridge: dict[str, Any] = {"STT_URL": url_of(stt_api)}
        sender: dict[str, Any] = {"synthesise": synthesise}
        exec(readme_block("stt-bridge"), bridge)
        exec(readme_block("tts-sender"), sender)
        async with (
            bridge["endpoint"].serve() as stt_server,
            sender["endpoint"].serve() as tts_server,
            api(stack) as client,
        ):
            tts_url = f"{url_of(tts_server)}/tts?token=s3cret"
            ingest = await client.create_adapter(IngestItem("speech", tts_url))
            assert ingest.session_id and ingest.adapter_id
            stt_url = f"{url_of(stt_server)}/stt?token=s3cret"
            egress = await client.create_adapter(EgressItem(ingest.session_id, "speech", stt_url))
            assert egress.adapter_id
            await asyncio.wait_for(spoken.wait(), 15)
            await asyncio.sleep(2.5)  # 1.5 s plays out in real time, then some silence
            await client.close_adapters([egress.adapter_id, ingest.adapter_id])
    stereo = np.frombuffer(b"".join(heard), "<i2").reshape(-1, 2).astype(np.float64)
    blocks = stereo[: len(stereo) // 960 * 960, 0].reshape(-1, 960)
    loud = np.flatnonzero(np.sqrt((blocks**2).mean(axis=1)) > 2_000)
    assert len(loud), "the bridge heard no speech"
    duration = (loud[-1] - loud[0] + 1) * 0.02
    frequency = dominant_frequency(blocks[loud[0] : loud[-1] + 1].reshape(-1))
    print(f"the bridge heard {duration:.2f} s of {frequency:.1f} Hz")
    assert abs(duration - 1.5) <= 0.1
    assert abs(frequency - 440) < 5
