"""The demo page's built-in endpoints: levels, the fan-out, the relay, and dev-only gating."""

from __future__ import annotations

import json
from collections.abc import Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from sluice.cli.apps import create_api_app
from sluice.config import Settings
from sluice.demo import viewer as demo_viewer
from sluice.demo.speech import CHUNK_BYTES, RATE, chunk_packets, melody, read_wav_mono, to_pcm
from sluice.demo.viewer import (
    SILENCE_DBFS,
    FanOut,
    LevelMeter,
    Subscriber,
    ViewerFull,
    ViewerHub,
    level_dbfs,
)
from sluice.wire.packet_pb2 import Packet

CLOSED_REDIS = "redis://127.0.0.1:9/0"  # nothing here touches Redis


def sine(amplitude: float, seconds: float = 0.02, freq_hz: float = 1000.0) -> bytes:
    t = np.arange(int(RATE * seconds)) / RATE
    mono = np.round(amplitude * 32767 * np.sin(2 * np.pi * freq_hz * t)).astype("<i2")
    return np.repeat(mono, 2).tobytes()


def test_silence_is_the_floor() -> None:
    assert level_dbfs(bytes(3840)) == SILENCE_DBFS
    assert level_dbfs(b"") == SILENCE_DBFS


def test_a_full_scale_sine_is_minus_3_dbfs() -> None:
    assert level_dbfs(sine(1.0)) == pytest.approx(-3.01, abs=0.05)
    assert level_dbfs(sine(0.1)) == pytest.approx(-23.01, abs=0.05)


def test_the_meter_gives_one_level_per_interval_averaged_over_it() -> None:
    meter = LevelMeter(interval_s=1.0)
    assert meter.feed(sine(1.0), now=10.0) is None
    assert meter.feed(bytes(3840), now=10.5) is None
    # Half the window at -3 dBFS and half silent: the power halves, -3 dB more.
    assert meter.feed(b"", now=11.0) == pytest.approx(-6.02, abs=0.05)
    assert meter.feed(bytes(3840), now=11.5) is None
    assert meter.feed(b"", now=12.0) == SILENCE_DBFS


def test_a_full_subscriber_drops_the_oldest() -> None:
    woken: list[int] = []
    subscriber = Subscriber(limit=3, wake=lambda: woken.append(1))
    for i in range(5):
        subscriber.push(f"m{i}")
    assert subscriber.drain() == ["m2", "m3", "m4"]
    assert subscriber.dropped == 2
    assert len(woken) == 5
    assert subscriber.drain() == []


def test_fan_out_copies_to_every_subscriber() -> None:
    fanout = FanOut()
    a, b = Subscriber(), Subscriber()
    fanout.subscribers |= {a, b}
    fanout.publish(b"jpeg")
    assert a.drain() == [b"jpeg"]
    assert b.drain() == [b"jpeg"]


def test_a_viewer_lives_while_a_socket_uses_it_and_their_number_is_bounded() -> None:
    hub = ViewerHub(max_viewers=1)
    with hub.use("v1") as first, hub.use("v1") as again:
        assert first is again
        with pytest.raises(ViewerFull), hub.use("v2"):
            pass
    assert len(hub) == 0


def test_the_speech_is_chunked_like_a_tts_service() -> None:
    pcm = to_pcm(melody(), RATE)
    messages = chunk_packets(pcm)
    assert messages[-1] == b""  # the empty Packet: end of segment
    payloads = [Packet.FromString(m).payload for m in messages[:-1]]
    assert b"".join(payloads) == pcm
    assert all(len(p) == CHUNK_BYTES for p in payloads[:-1])
    assert Packet.FromString(messages[1]).timestamp == CHUNK_BYTES // 4


def test_espeak_style_wav_is_resampled_to_48k_stereo() -> None:
    # espeak-ng --stdout: 22 050 Hz mono with a header that claims ~2 GiB of data.
    tone = np.round(0.5 * 32767 * np.sin(2 * np.pi * 440 * np.arange(22_050) / 22_050))
    data = tone.astype("<i2").tobytes()
    header = (
        b"RIFF\xff\xff\xff\x7fWAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00"
        + (22_050).to_bytes(4, "little")
        + (44_100).to_bytes(4, "little")
        + b"\x02\x00\x10\x00data\xff\xff\xff\x7f"
    )
    mono, rate = read_wav_mono(header + data)
    pcm = to_pcm(mono, rate)
    assert len(pcm) == RATE * 4
    stereo = np.frombuffer(pcm, "<i2").reshape(-1, 2)
    assert (stereo[:, 0] == stereo[:, 1]).all()
    assert level_dbfs(pcm) == pytest.approx(-9.03, abs=0.1)


@pytest.fixture
def dev_client() -> Iterator[TestClient]:
    settings = Settings(dev=True, redis_url=CLOSED_REDIS, redis_timeout_s=0.5)
    with TestClient(create_api_app(settings)) as client:
        yield client


def test_the_viewer_relays_jpegs_and_levels(
    dev_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_viewer, "LEVEL_INTERVAL_S", 0.0)  # a level per Packet
    with dev_client.websocket_connect("/demo/viewer/v1/out") as page:
        with dev_client.websocket_connect("/demo/viewer/v1/in?kind=jpeg") as egress:
            assert json.loads(page.receive_text()) == {
                "type": "endpoint",
                "kind": "jpeg",
                "state": "connected",
            }
            egress.send_bytes(b"\xff not a Packet")  # skipped
            egress.send_bytes(Packet(payload=b"\xff\xd8jpeg").SerializeToString())
            assert page.receive_bytes() == b"\xff\xd8jpeg"
        assert json.loads(page.receive_text())["state"] == "disconnected"
        with dev_client.websocket_connect("/demo/viewer/v1/in?kind=pcm") as egress:
            assert json.loads(page.receive_text())["state"] == "connected"
            egress.send_text("skipped")
            egress.send_bytes(Packet(payload=sine(1.0)).SerializeToString())
            egress.send_bytes(Packet(payload=bytes(3840)).SerializeToString())
            assert json.loads(page.receive_text()) == {"type": "level", "dbfs": -3.0}
            assert json.loads(page.receive_text()) == {"type": "level", "dbfs": SILENCE_DBFS}


def test_endpoint_urls_are_the_apis_own_address(dev_client: TestClient) -> None:
    answer = dev_client.get("/demo/endpoints", params={"viewer": "abc-1"})
    assert answer.status_code == 200
    assert answer.json() == {
        "pcm": "ws://testserver:80/demo/viewer/abc-1/in?kind=pcm",
        "jpeg": "ws://testserver:80/demo/viewer/abc-1/in?kind=jpeg",
        "speak": "ws://testserver:80/demo/speak",
    }
    assert dev_client.get("/demo/endpoints", params={"viewer": "../x"}).status_code == 400


def test_speak_sends_a_clip_then_an_empty_packet(
    dev_client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(demo_viewer, "FIRST_WORDS_AFTER_S", 0.0)
    with dev_client.websocket_connect("/demo/speak") as ws:
        payloads = []
        while (message := ws.receive_bytes()) != b"":
            payloads.append(Packet.FromString(message).payload)
    pcm = b"".join(payloads)
    assert 0.5 < len(pcm) / (RATE * 4) < 4.0
    assert level_dbfs(pcm) > -40


def test_demo_routes_do_not_exist_outside_development_mode() -> None:
    settings = Settings(apps="app1:secret1", redis_url=CLOSED_REDIS, redis_timeout_s=0.5)
    with TestClient(create_api_app(settings)) as client:
        answer = client.get("/demo/endpoints", params={"viewer": "v1"})
        assert answer.status_code == 404
        assert answer.json()["errorCode"] == "not_found"
        for path in ("/demo/viewer/v1/in?kind=pcm", "/demo/viewer/v1/out", "/demo/speak"):
            with pytest.raises(WebSocketDisconnect), client.websocket_connect(path):
                pass
