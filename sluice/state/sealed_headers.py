"""Header values at rest: encrypted with the deployment's key, bound to their adapter.

A create item's `headers` (E6) are secrets, often an endpoint's credentials. The API
seals them into one Fernet token (AES-128-CBC plus HMAC-SHA256, from `cryptography`),
stored under its own key (`sluice:adapter:{id}:headers`) beside the record, never in it,
so nothing that reads records (GET, webhooks, the admin commands) can show them. Only the
pipeline that dials opens it. The adapter id is sealed in with the values: a token copied
onto another adapter's key does not open there. The token goes when the adapter closes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


class SealError(Exception):
    """A token that this deployment's keys cannot open, or that belongs to another adapter."""


class HeaderSeal:
    """Seals and opens header values.

    Args:
        keys: Fernet keys; the first seals, any opens (so a key can be rotated).

    Raises:
        ValueError: no key.
    """

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ValueError("sealing header values needs at least one key")
        self._fernet = MultiFernet([Fernet(key) for key in keys])

    def seal(self, adapter_id: str, headers: Mapping[str, str]) -> str:
        plain = {"adapterId": adapter_id, "headers": dict(headers)}
        return self._fernet.encrypt(json.dumps(plain, separators=(",", ":")).encode()).decode()

    def open(self, adapter_id: str, token: str) -> dict[str, str]:
        """The header values sealed for `adapter_id`.

        Raises:
            SealError: not a token of these keys, or sealed for another adapter.
        """
        try:
            plain = json.loads(self._fernet.decrypt(token.encode()))
        except (InvalidToken, ValueError):
            raise SealError("sealed with a key this process lacks (SLUICE_SECRETS_KEY)") from None
        if not isinstance(plain, dict) or plain.get("adapterId") != adapter_id:
            raise SealError("sealed for another adapter")
        headers = plain.get("headers")
        if not isinstance(headers, dict):
            raise SealError("sealed, but malformed")
        return {str(name): str(value) for name, value in headers.items()}


def header_seal(keys: Sequence[bytes]) -> HeaderSeal | None:
    """A seal for `keys`, or None when the deployment has none (headers are refused)."""
    return HeaderSeal(keys) if keys else None
