"""The egress extension fields (E1, E4, E5, E8): validated before anything is touched,
kept in the record with defaults filled in, documented in /openapi.json.

Redis points at a closed port: a request that passes validation ends in 503, so a 400
here also proves nothing was written or enqueued.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.models import EgressTrack
from api.views import AdapterSettings
from sluice.config import Settings

AUTH = {"Authorization": "Bearer secret1"}
NEW = "/v1/apps/app1/adapters/websocket/new"


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings(apps="app1:secret1", redis_url="redis://127.0.0.1:9/0", redis_timeout_s=0.5)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def egress(codec: str = "pcm", **fields: Any) -> dict[str, Any]:
    return {
        "location": "remote",
        "sessionId": "s",
        "trackName": "t",
        "endpoint": "ws://127.0.0.1:9/",
        "outputCodec": codec,
        **fields,
    }


@pytest.mark.parametrize(
    ("item", "field"),
    [
        (egress(sampleRate=44100), "sampleRate"),
        (egress(sampleRate="16000"), "sampleRate"),
        (egress("mulaw", sampleRate=0), "sampleRate"),
        (egress(channels=3), "channels"),
        (egress(channels=True), "channels"),
        (egress(frameMs=10), "frameMs"),
        (egress(frameMs=20.5), "frameMs"),
        (egress("jpeg", sampleRate=16000), "sampleRate"),
        (egress("jpeg", channels=1), "channels"),
        (egress("jpeg", frameMs=20), "frameMs"),
        (egress("opus", sampleRate=48000), "sampleRate"),
        (egress("opus", frameMs=20), "frameMs"),
        (egress(events="yes"), "events"),
        (egress(events=1), "events"),
        (egress("jpeg", fps=0), "fps"),
        (egress("jpeg", fps=5.5), "fps"),
        (egress("jpeg", fps="1"), "fps"),
        (egress("pcm", fps=1), "fps"),
        (egress("jpeg", maxWidth=15), "maxWidth"),
        (egress("jpeg", maxWidth=4097), "maxWidth"),
        (egress("jpeg", maxHeight=320.5), "maxHeight"),
        (egress("mulaw", maxHeight=320), "maxHeight"),
        (egress("jpeg", quality=0), "quality"),
        (egress("jpeg", quality=101), "quality"),
        (egress("opus", quality=50), "quality"),
        (egress(reconnectWindowS=-1), "reconnectWindowS"),
        (egress(reconnectWindowS=61), "reconnectWindowS"),
        (egress(reconnectWindowS="5"), "reconnectWindowS"),
        (egress(framing="Raw"), "framing"),
        (egress("jpeg", framing="protobuf"), "framing"),
        (egress("opus", framing=None), "framing"),
        (egress(framing=["raw"]), "framing"),
    ],
)
def test_a_wrong_extension_value_is_invalid_params_naming_it(
    client: TestClient, item: dict[str, Any], field: str
) -> None:
    resp = client.post(NEW, json={"tracks": [egress(), item]}, headers=AUTH)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["errorCode"] == "invalid_params"
    assert body["errorDescription"].startswith("tracks[1]")
    assert field in body["errorDescription"]


@pytest.mark.parametrize(
    "item",
    [
        egress(sampleRate=16000, channels=1, frameMs=100, events=True, reconnectWindowS=0),
        egress("mulaw"),
        egress("mulaw", sampleRate=48000, channels=2, frameMs=60),
        egress("opus", events=False, reconnectWindowS=60),
        egress("jpeg", fps=0.1, maxWidth=16, maxHeight=4096, quality=1),
        egress("jpeg", fps=5, quality=100, reconnectWindowS=2.5),
        egress(unknownField={"anything": 1}),  # unknown fields are ignored, as before
        egress(framing="raw", sampleRate=16000, channels=1),
        egress("opus", framing="raw"),
        egress("jpeg", framing="packet"),
    ],
)
def test_valid_extension_values_pass_validation(client: TestClient, item: dict[str, Any]) -> None:
    resp = client.post(NEW, json={"tracks": [item]}, headers=AUTH)
    assert resp.status_code == 503, resp.text  # past validation, at Redis


def settings_of(item: dict[str, Any], **configured: Any) -> dict[str, Any]:
    return EgressTrack.model_validate(item).settings_in_effect(**configured)


def test_settings_in_effect_fill_in_the_defaults() -> None:
    assert settings_of(egress()) == {
        "sampleRate": 48000,
        "channels": 2,
        "frameMs": 20,
        "events": False,
        "reconnectWindowS": 5.0,
        "framing": "packet",
    }
    assert settings_of(egress("mulaw", frameMs=40, events=True)) == {
        "sampleRate": 8000,
        "channels": 1,
        "frameMs": 40,
        "events": True,
        "reconnectWindowS": 5.0,
        "framing": "packet",
    }
    assert settings_of(egress("opus")) == {
        "events": False,
        "reconnectWindowS": 5.0,
        "framing": "packet",
    }
    configured = {"reconnect_window_s": 12.0, "jpeg_quality": 60}
    assert settings_of(egress("jpeg"), **configured) == {
        "fps": 1.0,
        "quality": 60,
        "events": False,
        "reconnectWindowS": 12.0,
        "framing": "packet",
    }
    assert settings_of(egress("jpeg", fps=0.2, maxWidth=320, quality=90, reconnectWindowS=0)) == {
        "fps": 0.2,
        "maxWidth": 320,
        "quality": 90,
        "events": False,
        "reconnectWindowS": 0.0,
        "framing": "packet",
    }
    assert settings_of(egress("mulaw", framing="raw"))["framing"] == "raw"
    # What GET shows: every one of them typed.
    shown = AdapterSettings(**settings_of(egress("jpeg", maxHeight=240))).model_dump(
        exclude_none=True
    )
    assert shown == {
        "fps": 1.0,
        "maxHeight": 240,
        "quality": 75,
        "events": False,
        "reconnectWindowS": 5.0,
        "framing": "packet",
    }


def test_openapi_documents_every_extension_field_and_its_values(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    egress_schema = schemas["EgressTrack"]["properties"]
    for name in (
        "sampleRate",
        "channels",
        "frameMs",
        "events",
        "fps",
        "maxWidth",
        "maxHeight",
        "quality",
        "reconnectWindowS",
        "framing",
    ):
        assert egress_schema[name].get("description"), name
        assert name in schemas["AdapterSettings"]["properties"], name
    rates = egress_schema["sampleRate"]["anyOf"][0]
    assert rates["enum"] == [8000, 16000, 24000, 48000]
    assert egress_schema["outputCodec"]["enum"] == ["pcm", "mulaw", "opus", "jpeg"]
    assert egress_schema["framing"]["enum"] == ["packet", "raw"]
    assert egress_schema["framing"]["default"] == "packet"
    assert egress_schema["fps"]["anyOf"][0] == {"type": "number", "minimum": 0.1, "maximum": 5.0}
