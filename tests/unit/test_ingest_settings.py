"""Ingest's format settings (extensions.md E1): validated, defaulted, documented.

Redis points at a closed port: a request that got past validation would answer 503, so
every 400 below also proves nothing was created.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.models import CreateRequest, IngestTrack
from tests.unit.test_api_validation import AUTH, NEW, client, ingest

__all__ = ["client"]  # the fixture: Redis at a closed port


def in_effect(**fields: Any) -> dict[str, Any]:
    item = CreateRequest.model_validate({"tracks": [{**ingest(), **fields}]}).tracks[0]
    assert isinstance(item, IngestTrack)
    return item.settings_in_effect()


@pytest.mark.parametrize(
    ("fields", "settings"),
    [
        ({}, {"inputCodec": "pcm", "sampleRate": 48_000, "channels": 2}),  # Cloudflare's item
        ({"inputCodec": "mulaw"}, {"inputCodec": "mulaw", "sampleRate": 8_000, "channels": 1}),
        (
            {"sampleRate": 24_000, "channels": 1},
            {"inputCodec": "pcm", "sampleRate": 24_000, "channels": 1},
        ),
        (
            {"inputCodec": "mulaw", "sampleRate": 16_000},
            {"inputCodec": "mulaw", "sampleRate": 16_000, "channels": 1},
        ),
        (
            {"sampleRate": None, "channels": None},
            {"inputCodec": "pcm", "sampleRate": 48_000, "channels": 2},
        ),
        (
            {"sampleRate": 22_050, "unknownField": 1},
            {"inputCodec": "pcm", "sampleRate": 22_050, "channels": 2},
        ),
        (
            {"sampleRate": 16_000, "channels": 1, "framing": "raw"},
            {"inputCodec": "pcm", "sampleRate": 16_000, "channels": 1, "framing": "raw"},
        ),
    ],
)
def test_settings_in_effect_fill_in_the_codecs_defaults(
    fields: dict[str, Any], settings: dict[str, Any]
) -> None:
    assert in_effect(**fields) == {"framing": "packet", **settings}


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"inputCodec": "opus"}, "tracks[0].inputCodec"),
        ({"inputCodec": "ulaw"}, "tracks[0].inputCodec"),
        ({"sampleRate": 32_000}, "tracks[0].sampleRate"),
        ({"sampleRate": "16000"}, "tracks[0].sampleRate"),
        ({"sampleRate": 16_000.0}, "tracks[0].sampleRate"),
        ({"sampleRate": True}, "tracks[0].sampleRate"),
        ({"channels": 0}, "tracks[0].channels"),
        ({"channels": 6}, "tracks[0].channels"),
        ({"channels": True}, "tracks[0].channels"),
        ({"channels": "mono"}, "tracks[0].channels"),
        ({"framing": "RAW"}, "tracks[0].framing"),
        ({"framing": "protobuf"}, "tracks[0].framing"),
        ({"framing": 1}, "tracks[0].framing"),
    ],
)
def test_a_wrong_value_is_invalid_params_naming_the_field(
    client: TestClient, fields: dict[str, Any], named: str
) -> None:
    resp = client.post(NEW, json={"tracks": [ingest(), ingest(**fields)]}, headers=AUTH)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["errorCode"] == "invalid_params"
    assert body["errorDescription"].startswith(named.replace("[0]", "[1]") + ":")


def test_allowed_values_pass_validation(client: TestClient) -> None:
    items = [ingest(inputCodec="mulaw", sampleRate=rate, channels=1) for rate in (8_000, 16_000)]
    items += [ingest(sampleRate=22_050, channels=2, framing="raw")]
    items += [ingest(sampleRate=44_100, framing="packet")]
    resp = client.post(NEW, json={"tracks": items}, headers=AUTH)
    assert resp.status_code == 503  # valid: the (closed) Redis is the first thing it meets


def test_openapi_documents_the_fields_and_their_values(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()["components"]["schemas"]["IngestTrack"]
    fields = schema["properties"]
    assert fields["inputCodec"]["enum"] == ["pcm", "mulaw"]
    rates = next(branch for branch in fields["sampleRate"]["anyOf"] if "enum" in branch)
    assert rates["enum"] == [8_000, 16_000, 22_050, 24_000, 44_100, 48_000]
    channels = next(branch for branch in fields["channels"]["anyOf"] if "enum" in branch)
    assert channels["enum"] == [1, 2]
    assert fields["framing"]["enum"] == ["packet", "raw"]
    assert fields["framing"]["default"] == "packet"
    for name in ("inputCodec", "sampleRate", "channels", "framing"):
        assert fields[name]["description"], name
    assert "48000 for pcm, 8000 for mulaw" in fields["sampleRate"]["description"]
