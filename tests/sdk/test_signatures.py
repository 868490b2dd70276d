"""Signed dials (E6) and webhooks (E7) against the spec's formulas, computed here."""

from __future__ import annotations

import hashlib
import hmac
import json

import pytest

from sluice_endpoint.dials import Dial, DialCheck
from sluice_endpoint.errors import SignatureError
from sluice_endpoint.signatures import sign_dial, sign_webhook, verify_dial
from sluice_endpoint.webhooks import WebhookInbox, read_webhook

SECRET = "whsec_test"
NOW = 1_760_000_000
ENDPOINT = "wss://bots.example.com/stt?token=abc&x=%2F"


def spec_dial(secret: str, timestamp: int, adapter_id: str, endpoint: str) -> str:
    message = f"{timestamp}.{adapter_id}.{endpoint}".encode()
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def spec_webhook(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def dial_headers(
    timestamp: int = NOW, adapter_id: str = "ad1", endpoint: str = ENDPOINT
) -> dict[str, str]:
    return {
        "Sluice-Adapter-Id": adapter_id,
        "Sluice-Timestamp": str(timestamp),
        "Sluice-Signature": spec_dial(SECRET, timestamp, adapter_id, endpoint),
    }


def test_signatures_are_the_spec_formulas() -> None:
    assert sign_dial(SECRET, NOW, "ad1", ENDPOINT) == spec_dial(SECRET, NOW, "ad1", ENDPOINT)
    body = b'{"id":"e1"}'
    assert sign_webhook(SECRET, NOW, body) == spec_webhook(SECRET, NOW, body)
    assert sign_dial(SECRET, NOW, "ad1", ENDPOINT)[3:].islower()


def test_a_good_dial_passes_and_names_its_adapter() -> None:
    assert verify_dial(SECRET, dial_headers(), ENDPOINT, NOW) == "ad1"
    lower = {k.lower(): v for k, v in dial_headers().items()}
    assert verify_dial(SECRET, lower, ENDPOINT, NOW + 299) == "ad1"
    assert verify_dial(["old", SECRET], dial_headers(), ENDPOINT, NOW) == "ad1"  # rotation


@pytest.mark.parametrize(
    ("headers", "endpoint", "now"),
    [
        (dial_headers(), ENDPOINT, NOW + 301),  # older than 5 minutes
        (dial_headers(), ENDPOINT, NOW - 301),  # from the future
        (dial_headers(), ENDPOINT.replace("abc", "abd"), NOW),  # another endpoint
        ({**dial_headers(), "Sluice-Adapter-Id": "ad2"}, ENDPOINT, NOW),  # another adapter
        ({**dial_headers(), "Sluice-Timestamp": str(NOW + 1)}, ENDPOINT, NOW),
        ({**dial_headers(), "Sluice-Signature": "v0=" + "0" * 64}, ENDPOINT, NOW),
        ({k: v for k, v in dial_headers().items() if k != "Sluice-Signature"}, ENDPOINT, NOW),
        ({k: v for k, v in dial_headers().items() if k != "Sluice-Adapter-Id"}, ENDPOINT, NOW),
        ({**dial_headers(), "Sluice-Timestamp": "soon"}, ENDPOINT, NOW),
    ],
)
def test_bad_dials_are_refused(headers: dict[str, str], endpoint: str, now: int) -> None:
    with pytest.raises(SignatureError):
        verify_dial(SECRET, headers, endpoint, now)
    with pytest.raises(SignatureError):
        verify_dial("another secret", dial_headers(), ENDPOINT, NOW)


def test_dial_check_rebuilds_the_endpoint_url() -> None:
    headers = dial_headers(endpoint="ws://127.0.0.1:9100/stt?token=abc")
    dial = Dial("/stt?token=abc", {**headers, "Host": "127.0.0.1:9100"})
    DialCheck(signing_secret=SECRET).check(dial, NOW)
    behind_proxy = dial_headers(endpoint="wss://bots.example.com/sluice/stt?token=abc")
    public = DialCheck(signing_secret=SECRET, public_url="wss://bots.example.com/sluice/")
    public.check(Dial("/stt?token=abc", behind_proxy), NOW)
    with pytest.raises(SignatureError):
        DialCheck(signing_secret=SECRET).check(Dial("/stt?token=abc", behind_proxy), NOW)


def test_tokens_in_the_query_or_a_bearer_header() -> None:
    check = DialCheck(token="s3cret")
    check.check(Dial("/ingest?token=s3cret"), NOW)
    check.check(Dial("/ingest", {"authorization": "Bearer s3cret"}), NOW)
    for dial in (Dial("/ingest?token=s3cre"), Dial("/ingest"), Dial("/i?tok=s3cret")):
        with pytest.raises(SignatureError):
            check.check(dial, NOW)
    with pytest.raises(ValueError):
        DialCheck(token="")


def webhook_body() -> bytes:
    adapter = {
        "adapterId": "ad1",
        "state": "closed",
        "direction": "egress",
        "sessionId": "s1",
        "trackName": "mic",
        "endpoint": "ws://127.0.0.1:9100/stt",
        "codec": "pcm",
        "createdAt": "2025-01-01T00:00:00Z",
        "closeReason": "endpoint_unavailable",
        "counters": {"packets": 10, "bytes": 38400, "reconnects": 1},
    }
    event = {
        "id": "ev1",
        "type": "adapter.closed",
        "createdAt": "2025-01-01T00:00:09Z",
        "appId": "app1",
        "sequence": 3,
        "adapter": adapter,
    }
    return json.dumps(event, separators=(",", ":")).encode()


def test_a_signed_webhook_is_read() -> None:
    body = webhook_body()
    headers = {"Sluice-Timestamp": str(NOW), "Sluice-Signature": spec_webhook(SECRET, NOW, body)}
    event = read_webhook(body, headers, SECRET, now=NOW + 10)
    assert (event.id, event.type, event.sequence, event.app_id) == (
        "ev1",
        "adapter.closed",
        3,
        "app1",
    )
    assert event.adapter.close_reason == "endpoint_unavailable"
    assert event.adapter.counters["reconnects"] == 1
    with pytest.raises(SignatureError):
        read_webhook(body + b" ", headers, SECRET, now=NOW)  # the body as received, exactly
    with pytest.raises(SignatureError):
        read_webhook(body, headers, SECRET, now=NOW + 301)
    with pytest.raises(ValueError):
        read_webhook(b"[]", {}, None)
    inbox = WebhookInbox(size=2)
    assert inbox.first_time(event) and not inbox.first_time(event)
