"""The pure parts of E6 and E7: settings, sealing, signatures, dial headers, the record's
public view, and a webhook POST's refusals (against a real local HTTP server)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
from collections.abc import AsyncIterator

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from api.views import AdapterView
from sluice.config import DEV_SECRETS_KEY, Settings
from sluice.signing import dial_signature, signed_webhook_headers, webhook_signature
from sluice.state.records import AdapterRecord, AdapterState, Direction
from sluice.state.sealed_headers import HeaderSeal, SealError
from sluice.state.view import adapter_json
from sluice_endpoint.signatures import verify_dial, verify_webhook_signature
from worker.dial_identity import DialIdentity
from worker.webhooks.delivery import DeliveryFailed, post

SECRET = "not-shown-anywhere"


def test_settings_parse_and_never_echo_a_secret() -> None:
    key = Fernet.generate_key().decode()
    settings = Settings(
        apps="a:b,c:d",
        secrets_key=f"{key}, {Fernet.generate_key().decode()}",
        signing_secrets=f"a:{SECRET}:with:colons",
        webhooks="a:https://hooks.example/x?t=1,c:http://10.0.0.1:8000/",
    )
    assert settings.header_keys[0] == key.encode() and len(settings.header_keys) == 2
    assert settings.app_signing_secrets == {"a": f"{SECRET}:with:colons"}
    assert settings.app_webhooks == {
        "a": "https://hooks.example/x?t=1",
        "c": "http://10.0.0.1:8000/",
    }
    assert SECRET not in repr(settings)
    for bad in (
        {"secrets_key": SECRET},
        {"signing_secrets": f":{SECRET}"},
        {"signing_secrets": f"a:{SECRET},a:{SECRET}"},
        {"webhooks": f"a:ftp://host/{SECRET}"},
        {"webhooks": "a:https://"},
    ):
        with pytest.raises(ValidationError) as caught:
            Settings(apps="a:b", **bad)
        assert SECRET not in str(caught.value)


def test_header_keys_outside_and_inside_development_mode() -> None:
    assert Settings(apps="a:b").header_keys == ()  # header values are refused then
    assert Settings(dev=True).header_keys == (DEV_SECRETS_KEY,)
    Fernet(DEV_SECRETS_KEY)  # a valid key


def test_sealed_headers_open_only_for_their_adapter_and_key() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    token = HeaderSeal([old]).seal("ad1", {"Authorization": SECRET})
    assert SECRET not in token
    assert HeaderSeal([new, old]).open("ad1", token) == {"Authorization": SECRET}  # rotation
    with pytest.raises(SealError):
        HeaderSeal([new]).open("ad1", token)
    with pytest.raises(SealError):
        HeaderSeal([old]).open("ad2", token)  # copied onto another adapter's key
    with pytest.raises(SealError):
        HeaderSeal([old]).open("ad1", token[:-4] + "AAAA")


def spec(secret: str, message: bytes) -> str:
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def test_signatures_follow_the_spec_and_the_sdk_accepts_them() -> None:
    endpoint = "wss://bots.example/stt?token=x&y=%2F"
    assert dial_signature(SECRET, 1700000000, "ad1", endpoint) == spec(
        SECRET, f"1700000000.ad1.{endpoint}".encode()
    )
    assert webhook_signature(SECRET, 1700000000, b'{"a":1}') == spec(SECRET, b'1700000000.{"a":1}')
    identity = DialIdentity("ad1", endpoint, announce=True, signing_secret=SECRET)
    headers = dict(identity.for_dial(1700000000.9))
    assert headers["Sluice-Timestamp"] == "1700000000"
    assert verify_dial(SECRET, headers, endpoint, now=1700000100) == "ad1"
    body = b'{"id":"ad1-1"}'
    verify_webhook_signature(SECRET, dict(signed_webhook_headers(SECRET, body, 1.7e9)), body, 1.7e9)


def test_dial_headers_follow_the_compatibility_rule() -> None:
    plain = DialIdentity("ad1", "ws://h/", announce=False)
    assert plain.for_dial(1.0) == []  # Cloudflare's fields only: nothing new on the wire
    given = DialIdentity("ad1", "ws://h/", announce=True, headers={"Authorization": SECRET})
    assert given.for_dial(1.0) == [("Authorization", SECRET), ("Sluice-Adapter-Id", "ad1")]
    assert SECRET not in repr(given)
    signed = DialIdentity("ad1", "ws://h/", announce=True, signing_secret=SECRET)
    names = [name for name, _ in signed.for_dial(1.0)]
    assert names == ["Sluice-Adapter-Id", "Sluice-Timestamp", "Sluice-Signature"]
    assert SECRET not in repr(signed)


def test_the_public_view_is_what_get_answers() -> None:
    record = AdapterRecord(
        adapter_id="ad1",
        app_id="app1",
        direction=Direction.EGRESS,
        session_id="s1",
        track_name="mic",
        endpoint="wss://user:pw@h:8443/x?token=t",
        codec="pcm",
        state=AdapterState.CLOSED,
        closed_at="2026-01-01T00:00:01.000Z",
        close_reason="endpoint_unavailable",
        options={"headerNames": ["Authorization"]},
    )
    record.counters = {name: n + 1 for n, name in enumerate(record.counters)}
    view = adapter_json(record)
    assert AdapterView.model_validate(view).model_dump(mode="json", exclude_none=True) == view
    assert view["endpoint"] == "wss://h:8443/x"
    assert view["counters"]["maxLoopLagMs"] == record.counters["max_loop_lag_ms"]
    live = adapter_json(AdapterRecord("a", "b", Direction.INGEST, "", "t", "ws://h/", "pcm"))
    assert "closedAt" not in live and "closeReason" not in live and live["settings"] == {}


@contextlib.asynccontextmanager
async def http_server(answer: bytes | None) -> AsyncIterator[str]:
    """Answers every request with `answer` (raw HTTP), or never (None)."""
    release = asyncio.Event()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        if answer is None:
            await release.wait()
        else:
            writer.write(answer)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}/hook?token=t"
    finally:
        release.set()
        server.close()


async def test_a_webhook_post_answers_its_status_and_follows_no_redirect() -> None:
    settings = Settings(apps="a:b", allow_private_endpoints=True)
    async with http_server(b"HTTP/1.1 204 No Content\r\n\r\n") as url:
        assert await post(url, b"{}", [], settings) == 204
    moved = b"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:1/\r\nContent-Length: 0\r\n\r\n"
    async with http_server(moved) as url:
        assert await post(url, b"{}", [], settings) == 302  # a failure, not followed


async def test_a_webhook_post_obeys_the_endpoint_policy_and_its_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async with http_server(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n") as url:
        with pytest.raises(DeliveryFailed, match="not allowed"):
            await post(url, b"{}", [], Settings(apps="a:b"))  # loopback refused by default
    monkeypatch.setattr("worker.webhooks.delivery.ANSWER_TIMEOUT_S", 0.3)
    async with http_server(None) as url:
        with pytest.raises(DeliveryFailed, match="did not answer"):
            await post(url, b"{}", [], Settings(apps="a:b", allow_private_endpoints=True))
