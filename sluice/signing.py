"""Signatures that let endpoints and webhook receivers trust Sluice (extensions E6, E7).

A dial of an app with a signing secret carries `Sluice-Timestamp: <unix seconds>` and
`Sluice-Signature: v1=<lowercase hex of HMAC-SHA256(secret, "<timestamp>.<adapterId>.
<endpoint exactly as in the create item>")>`; a webhook delivery the same two headers
over `"<timestamp>.<raw body>"`. The receiver recomputes the HMAC, compares in constant
time and refuses timestamps older than 5 minutes. Pure functions, `now` passed in.
"""

from __future__ import annotations

import hashlib
import hmac

ADAPTER_ID_HEADER = "Sluice-Adapter-Id"
TIMESTAMP_HEADER = "Sluice-Timestamp"
SIGNATURE_HEADER = "Sluice-Signature"
SCHEME = "v1"

Headers = list[tuple[str, str]]


def _sign(secret: str, message: bytes) -> str:
    return f"{SCHEME}={hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()}"


def dial_signature(secret: str, timestamp: int, adapter_id: str, endpoint: str) -> str:
    """The `Sluice-Signature` value of one dial."""
    return _sign(secret, f"{timestamp}.{adapter_id}.{endpoint}".encode())


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `Sluice-Signature` value of one webhook delivery."""
    return _sign(secret, str(timestamp).encode() + b"." + body)


def signed_dial_headers(secret: str, adapter_id: str, endpoint: str, now: float) -> Headers:
    """`Sluice-Timestamp` and `Sluice-Signature` for a dial made at `now` (unix seconds)."""
    timestamp = int(now)
    return [
        (TIMESTAMP_HEADER, str(timestamp)),
        (SIGNATURE_HEADER, dial_signature(secret, timestamp, adapter_id, endpoint)),
    ]


def signed_webhook_headers(secret: str, body: bytes, now: float) -> Headers:
    """`Sluice-Timestamp` and `Sluice-Signature` for a delivery of `body` at `now`."""
    timestamp = int(now)
    return [
        (TIMESTAMP_HEADER, str(timestamp)),
        (SIGNATURE_HEADER, webhook_signature(secret, timestamp, body)),
    ]
