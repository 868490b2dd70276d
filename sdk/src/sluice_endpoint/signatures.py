"""Signed dials (E6) and webhooks (E7): the HMAC math, with `now` passed in.

A dial of an app with a signing secret carries
`Sluice-Timestamp: <unix seconds>` and `Sluice-Signature: v1=<lowercase hex of
HMAC-SHA256(secret, "<timestamp>.<adapterId>.<endpoint as in the create item>")>`;
a webhook delivery the same headers over `"<timestamp>.<raw body>"`. Timestamps more
than 5 minutes away from now are refused, so a captured request cannot be replayed
later. Several secrets may be given (while rotating one); any of them will do.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping

from sluice_endpoint.errors import SignatureError

TOLERANCE_S = 300
TIMESTAMP_HEADER = "Sluice-Timestamp"
SIGNATURE_HEADER = "Sluice-Signature"
ADAPTER_ID_HEADER = "Sluice-Adapter-Id"
SCHEME = "v1"

Secrets = str | bytes | Iterable[str | bytes]


def _hmac(secret: str | bytes, message: bytes) -> str:
    key = secret.encode() if isinstance(secret, str) else secret
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign_dial(secret: str | bytes, timestamp: int, adapter_id: str, endpoint: str) -> str:
    """The `Sluice-Signature` value of a dial (E6)."""
    return f"{SCHEME}={_hmac(secret, f'{timestamp}.{adapter_id}.{endpoint}'.encode())}"


def sign_webhook(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The `Sluice-Signature` value of a webhook delivery (E7)."""
    return f"{SCHEME}={_hmac(secret, str(timestamp).encode() + b'.' + body)}"


def header(headers: Mapping[str, str], name: str) -> str | None:
    """A header by name, whatever its case."""
    wanted = name.lower()
    for key, value in headers.items():
        if key.lower() == wanted:
            return value
    return None


def _secrets(secret: Secrets) -> list[str | bytes]:
    secrets = [secret] if isinstance(secret, str | bytes) else list(secret)
    if not secrets or any(not s for s in secrets):
        raise ValueError("a signing secret must not be empty")
    return secrets


def _timestamp(headers: Mapping[str, str], now: float, tolerance_s: float) -> int:
    raw = header(headers, TIMESTAMP_HEADER)
    if raw is None:
        raise SignatureError(f"no {TIMESTAMP_HEADER} header")
    if not raw.strip().isdigit():
        raise SignatureError(f"{TIMESTAMP_HEADER} is not unix seconds")
    timestamp = int(raw)
    if abs(now - timestamp) > tolerance_s:
        raise SignatureError(
            f"{TIMESTAMP_HEADER} is {now - timestamp:.0f} s away from now "
            f"(more than {tolerance_s:.0f} s): refused as a possible replay"
        )
    return timestamp


def _check(headers: Mapping[str, str], expected: Iterable[str]) -> None:
    raw = header(headers, SIGNATURE_HEADER)
    if raw is None:
        raise SignatureError(f"no {SIGNATURE_HEADER} header")
    given = [part.strip() for part in raw.split(",") if part.strip().startswith(f"{SCHEME}=")]
    if not given:
        raise SignatureError(f"{SIGNATURE_HEADER} has no {SCHEME}= signature")
    wanted = list(expected)
    # Compare every pair, so the time taken tells nothing about which one came close.
    matches = [hmac.compare_digest(g.encode(), w.encode()) for g in given for w in wanted]
    if not any(matches):
        raise SignatureError(f"{SIGNATURE_HEADER} does not match")


def verify_dial(
    secret: Secrets,
    headers: Mapping[str, str],
    endpoint: str | Iterable[str],
    now: float,
    tolerance_s: float = TOLERANCE_S,
) -> str:
    """Checks a dial's signature (E6); returns its adapter id.

    Args:
        secret: the app's signing secret (or several, while rotating).
        headers: the handshake request's headers.
        endpoint: the endpoint URL exactly as in the create item (or the candidates).
        now: unix seconds.
        tolerance_s: how far the timestamp may be from `now`.

    Raises:
        SignatureError: a missing or wrong signature, adapter id or timestamp.
    """
    adapter_id = header(headers, ADAPTER_ID_HEADER)
    if not adapter_id:
        raise SignatureError(f"no {ADAPTER_ID_HEADER} header")
    timestamp = _timestamp(headers, now, tolerance_s)
    endpoints = [endpoint] if isinstance(endpoint, str) else list(endpoint)
    _check(
        headers,
        (sign_dial(s, timestamp, adapter_id, url) for s in _secrets(secret) for url in endpoints),
    )
    return adapter_id


def verify_webhook_signature(
    secret: Secrets,
    headers: Mapping[str, str],
    body: bytes,
    now: float,
    tolerance_s: float = TOLERANCE_S,
) -> None:
    """Checks a webhook delivery's signature (E7) over its raw body, as received.

    Raises:
        SignatureError: a missing or wrong signature or timestamp.
    """
    timestamp = _timestamp(headers, now, tolerance_s)
    _check(headers, (sign_webhook(s, timestamp, body) for s in _secrets(secret)))
