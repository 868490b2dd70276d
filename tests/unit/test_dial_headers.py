"""A create item's `headers` (E6), judged before anything is looked up.

Redis points at a closed port (as in test_api_validation): an item that passes
validation gets 503, so every 400 below also proves nothing was written or enqueued.
No answer ever repeats a header's value.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient

from api.main import create_app
from sluice.config import Settings

AUTH = {"Authorization": "Bearer secret1"}
NEW = "/v1/apps/app1/adapters/websocket/new"
VALUE = "v4lue-that-is-SECRET"


def make_client(**settings: Any) -> TestClient:
    values = Settings(
        apps="app1:secret1",
        redis_url="redis://127.0.0.1:9/0",
        redis_timeout_s=0.5,
        **settings,
    )
    return TestClient(create_app(values))


@pytest.fixture
def client() -> Iterator[TestClient]:
    with make_client(secrets_key=Fernet.generate_key().decode()) as test_client:
        yield test_client


def item(headers: Any) -> dict[str, Any]:
    return {
        "tracks": [
            {
                "location": "local",
                "trackName": "t",
                "endpoint": "ws://127.0.0.1:9000/",
                "inputCodec": "pcm",
                "headers": headers,
            }
        ]
    }


def refused(client: TestClient, headers: Any) -> str:
    resp = client.post(NEW, json=item(headers), headers=AUTH)
    assert resp.status_code == 400, resp.text
    body = resp.json()
    assert body["errorCode"] == "invalid_params"
    assert body["errorDescription"].startswith("tracks[0].headers")
    assert VALUE not in resp.text
    return str(body["errorDescription"])


@pytest.mark.parametrize(
    "name",
    [
        "Host",
        "connection",
        "Upgrade",
        "Sec-WebSocket-Key",
        "sec-websocket-protocol",
        "Sec-WebSocket-Extensions",
        "Content-Length",
        "Transfer-Encoding",
        "Sluice-Signature",
        "sluice-adapter-id",
        "Sluice-Anything",
    ],
)
def test_the_handshakes_and_sluices_own_headers_are_refused(client: TestClient, name: str) -> None:
    assert name in refused(client, {name: VALUE})


@pytest.mark.parametrize("name", ["", "X Key", "X:Key", "X-Kéy", "(x)", "x\r\ny"])
def test_names_that_are_not_http_tokens_are_refused(client: TestClient, name: str) -> None:
    refused(client, {name: VALUE})


@pytest.mark.parametrize("bad", ["\r", "\n", "\r\n", "\0"])
def test_values_with_cr_lf_or_nul_are_refused(client: TestClient, bad: str) -> None:
    refused(client, {"X-Token": f"{VALUE}{bad}Injected: 1"})


def test_at_most_16_headers_and_8_kib(client: TestClient) -> None:
    refused(client, {f"X-H{n}": VALUE for n in range(17)})
    refused(client, {"X-Big": VALUE + "x" * 8192})
    refused(client, {"X-Token": 12345})  # values are strings
    refused(client, ["X-Token", VALUE])  # an object, not a list
    # 16 headers of 8 KiB in all pass validation (503: nothing behind it answers)
    sixteen = {f"X-H{n:02d}": "y" * (8192 // 16 - 5) for n in range(16)}
    assert client.post(NEW, json=item(sixteen), headers=AUTH).status_code == 503


def test_good_headers_pass_validation(client: TestClient) -> None:
    for headers in ({"Authorization": f"Token {VALUE}", "X-Api-Key": ""}, {}, None):
        resp = client.post(NEW, json=item(headers), headers=AUTH)
        assert resp.status_code == 503, resp.text  # past validation: Redis is unreachable


def test_without_a_key_header_values_are_refused_not_stored() -> None:
    with make_client() as no_key:
        description = refused(no_key, {"Authorization": VALUE})
        assert "SLUICE_SECRETS_KEY" in description
        # Nothing to keep secret: an empty object (only Sluice-Adapter-Id) is fine.
        assert no_key.post(NEW, json=item({}), headers=AUTH).status_code == 503
    with make_client(dev=True) as dev:  # development mode has a (public) key
        assert dev.post(NEW, json=item({"A": VALUE}), headers=AUTH).status_code == 503


def test_the_api_documents_headers_and_header_names(client: TestClient) -> None:
    schemas = client.get("/openapi.json").json()["components"]["schemas"]
    assert "Sec-WebSocket-*" in schemas["IngestTrack"]["properties"]["headers"]["description"]
    assert "headers" in schemas["EgressTrack"]["properties"]
    assert "headerNames" in schemas["AdapterSettings"]["properties"]
