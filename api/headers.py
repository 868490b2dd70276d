"""The `headers` of a create item (extension E6): what may be sent on an endpoint's dial.

Values are secrets (an endpoint's credentials): an error names the header, never its
value, and a value is checked only for the characters that would break the request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

MAX_HEADERS = 16
MAX_HEADER_BYTES = 8 * 1024  # names and values together, UTF-8
# RFC 9110 `token`: what a header name may be made of.
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")
_BREAKS_THE_REQUEST = ("\r", "\n", "\0")
# The WebSocket handshake's own headers, and Sluice's (which only Sluice may set).
_RESERVED = frozenset({"host", "connection", "upgrade", "content-length", "transfer-encoding"})
_RESERVED_PREFIXES = ("sec-websocket-", "sluice-")


def check_headers(headers: Mapping[str, str] | None) -> Mapping[str, str] | None:
    """Accepts headers Sluice can send on every dial as given.

    Raises:
        ValueError: too many or too large, a name that is not an HTTP token or that the
            handshake (or Sluice) sets itself, a value with CR, LF or NUL.
    """
    if headers is None:
        return None
    if len(headers) > MAX_HEADERS:
        raise ValueError(f"at most {MAX_HEADERS} headers, got {len(headers)}")
    size = sum(len(name.encode()) + len(value.encode()) for name, value in headers.items())
    if size > MAX_HEADER_BYTES:
        raise ValueError(f"names and values must add up to at most {MAX_HEADER_BYTES} bytes")
    for name, value in headers.items():
        if not _TOKEN.match(name):
            raise ValueError(f"header name {name[:64]!r} is not an HTTP token")
        lowered = name.lower()
        if lowered in _RESERVED or lowered.startswith(_RESERVED_PREFIXES):
            raise ValueError(f"header {name!r} is set by the WebSocket handshake or by Sluice")
        if any(char in value for char in _BREAKS_THE_REQUEST):
            raise ValueError(f"the value of header {name!r} holds CR, LF or NUL")
    return headers


def header_settings(headers: Mapping[str, str] | None) -> dict[str, Any]:
    """What the record shows of `headers`: their names (E6), only when some were given."""
    return {} if headers is None else {"headerNames": list(headers)}
