"""Step one of every request: auth and body validation, before anything is looked up.

Redis points at a closed port here: a request that gets past validation would fail with
503, so every assertion below also proves nothing was written or enqueued.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from sluice.config import Settings

AUTH = {"Authorization": "Bearer secret1"}
NEW = "/v1/apps/app1/adapters/websocket/new"
CLOSE = "/v1/apps/app1/adapters/websocket/close"


@pytest.fixture
def client() -> Iterator[TestClient]:
    settings = Settings(
        apps="app1:secret1,app2:secret2", redis_url="redis://127.0.0.1:9/0", redis_timeout_s=0.5
    )
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def ingest(**changes: Any) -> dict[str, Any]:
    item = {
        "location": "local",
        "trackName": "t",
        "endpoint": "ws://127.0.0.1:9000/",
        "inputCodec": "pcm",
        "mode": "buffer",
    }
    item.update(changes)
    return {k: v for k, v in item.items() if v is not None}


def egress(**changes: Any) -> dict[str, Any]:
    item = {
        "location": "remote",
        "sessionId": "s",
        "trackName": "t",
        "endpoint": "wss://example.test/x",
        "outputCodec": "pcm",
    }
    item.update(changes)
    return {k: v for k, v in item.items() if v is not None}


def test_missing_bearer_is_401(client: TestClient) -> None:
    resp = client.post(NEW, json={"tracks": [ingest()]})
    assert resp.status_code == 401
    assert resp.json()["errorCode"] == "unauthorized"


def test_wrong_secret_is_401_even_if_it_is_another_apps(client: TestClient) -> None:
    resp = client.post(
        NEW, json={"tracks": [ingest()]}, headers={"Authorization": "Bearer secret2"}
    )
    assert resp.status_code == 401


def test_unknown_app_is_404(client: TestClient) -> None:
    resp = client.post(
        "/v1/apps/nope/adapters/websocket/new", json={"tracks": [ingest()]}, headers=AUTH
    )
    assert resp.status_code == 404
    assert resp.json()["errorCode"] == "not_found_app_error"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "decoding_error"),
        (b"", "decoding_error"),
        (b"[]", "decoding_error"),
        (b'{"tracks": "x"}', "decoding_error"),
        (b"{}", "decoding_error"),
    ],
)
def test_body_of_the_wrong_shape_is_decoding_error(
    client: TestClient, body: bytes, code: str
) -> None:
    resp = client.post(NEW, content=body, headers={**AUTH, "content-type": "application/json"})
    assert resp.status_code == 400
    assert resp.json()["errorCode"] == code
    assert set(resp.json()) == {"errorCode", "errorDescription"}


@pytest.mark.parametrize(
    "item",
    [
        ingest(location="elsewhere"),
        ingest(location=None),
        ingest(trackName=""),
        ingest(trackName=None),
        ingest(endpoint="http://127.0.0.1:9000/"),
        ingest(endpoint="ws://"),
        ingest(endpoint="ws:///path"),
        ingest(endpoint="ws://exa mple.com/"),
        ingest(endpoint=None),
        ingest(inputCodec="opus"),
        ingest(inputCodec=None),
        ingest(mode="stream"),
        egress(outputCodec="vorbis"),
        egress(outputCodec=None),
        egress(sessionId=""),
        egress(sessionId=None),
        egress(trackName=7),
    ],
)
def test_invalid_field_is_invalid_params(client: TestClient, item: dict[str, Any]) -> None:
    resp = client.post(NEW, json={"tracks": [ingest(), item]}, headers=AUTH)
    assert resp.status_code == 400, resp.text
    assert resp.json()["errorCode"] == "invalid_params"
    assert resp.json()["errorDescription"].startswith("tracks[1]")


def test_no_tracks_is_400_and_more_than_four_is_406(client: TestClient) -> None:
    resp = client.post(NEW, json={"tracks": []}, headers=AUTH)
    assert (resp.status_code, resp.json()["errorCode"]) == (400, "invalid_params")
    resp = client.post(NEW, json={"tracks": [ingest()] * 5}, headers=AUTH)
    assert (resp.status_code, resp.json()["errorCode"]) == (406, "invalid_params")
    resp = client.post(CLOSE, json={"tracks": [{"adapterId": "a"}] * 65}, headers=AUTH)
    assert resp.status_code == 406


def test_valid_shapes_pass_validation(client: TestClient) -> None:
    """Missing `mode`, IPv6 literals, wss and egress `mode` all validate; the request then
    reaches Redis, which is down here: 503 in the contract's shape, not a 500."""
    body = {
        "tracks": [
            ingest(mode=None, endpoint="ws://[::1]:9000/a?b=c"),
            egress(mode="anything", outputCodec="jpeg"),
        ]
    }
    resp = client.post(NEW, json=body, headers=AUTH)
    assert resp.status_code == 503
    assert resp.json()["errorCode"] == "service_unavailable"


def test_body_over_64_kib_is_413(client: TestClient) -> None:
    padding = "x" * 65_536
    resp = client.post(NEW, json={"tracks": [ingest(trackName=padding)]}, headers=AUTH)
    assert resp.status_code == 413
    assert resp.json()["errorCode"] == "decoding_error"


def test_json_without_content_type_is_accepted(client: TestClient) -> None:
    resp = client.post(
        NEW,
        content=b'{"tracks": []}',
        headers={**AUTH, "content-type": "application/x-www-form-urlencoded"},
    )
    assert resp.json()["errorCode"] == "invalid_params"  # parsed as JSON, then judged


def test_unknown_route_uses_error_shape(client: TestClient) -> None:
    resp = client.get("/v1/nothing-here")
    assert resp.status_code == 404
    assert resp.json()["errorCode"] == "not_found"


def test_openapi_describes_routes_and_statuses(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    new = schema["paths"]["/v1/apps/{appId}/adapters/websocket/new"]["post"]
    assert {"200", "400", "401", "404", "406", "413", "503"} <= set(new["responses"])
    assert "requestBody" in new
    close = schema["paths"]["/v1/apps/{appId}/adapters/websocket/close"]["post"]
    assert {"200", "400", "401", "404", "406", "413", "503"} <= set(close["responses"])
    get = schema["paths"]["/v1/apps/{appId}/adapters/websocket/{adapterId}"]["get"]
    assert {"200", "401", "404", "503"} <= set(get["responses"])
    assert "IngestTrack" in schema["components"]["schemas"]
    assert client.get("/docs").status_code == 200
