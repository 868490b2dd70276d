"""Parsers of the settings that hold lists (apps, webhooks, keys, ports, ICE servers).

Each raises `ValueError` with a message naming the variable, never a secret value, so
`Settings` can refuse a bad environment with a message an operator can act on.
"""

from __future__ import annotations

import base64
import binascii
import re
from urllib.parse import urlsplit


def parse_app_pairs(
    spec: str, setting: str = "SLUICE_APPS", value: str = "secret"
) -> dict[str, str]:
    """Parses `appId:value,appId2:value2` into a mapping (the value may hold colons).

    Args:
        setting: the variable's name, for error messages.
        value: what the value is, for error messages.

    Raises:
        ValueError: an entry has no value, an empty id, or an id appears twice. The
            message names the app, never the value (it may be a secret).
    """
    pairs: dict[str, str] = {}
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        app_id, sep, rest = entry.partition(":")
        app_id = app_id.strip()
        if not sep or not app_id or not rest:
            shown = app_id or "(empty)"
            raise ValueError(f"{setting} entry for app {shown!r} must look like appId:{value}")
        if app_id in pairs:
            raise ValueError(f"{setting} names app {app_id!r} twice")
        pairs[app_id] = rest
    return pairs


def parse_apps(spec: str) -> dict[str, str]:
    """Parses `appId:secret,appId2:secret2` into a mapping.

    Raises:
        ValueError: an entry has no secret, an empty id, or an id appears twice.
    """
    return parse_app_pairs(spec)


def parse_webhooks(spec: str) -> dict[str, str]:
    """Parses `appId:https://...,appId2:http://...` (SLUICE_WEBHOOKS) into a mapping.

    Raises:
        ValueError: an entry is not appId:URL, or the URL is not http(s) with a host.
    """
    hooks = parse_app_pairs(spec, "SLUICE_WEBHOOKS", "https://host/path")
    for app_id, url in hooks.items():
        parts = urlsplit(url.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname or " " in url.strip():
            raise ValueError(
                f"SLUICE_WEBHOOKS entry for app {app_id!r} must be an http:// or https:// URL "
                "naming a host"
            )
        hooks[app_id] = url.strip()
    return hooks


def parse_secrets_keys(spec: str) -> tuple[bytes, ...]:
    """Parses SLUICE_SECRETS_KEY: Fernet keys (32 url-safe base64 bytes), comma-separated.

    Raises:
        ValueError: an entry is not a Fernet key (the message says which, not what).
    """
    found: list[bytes] = []
    for number, raw in enumerate((part.strip() for part in spec.split(",")), start=1):
        if not raw:
            continue
        try:
            valid = len(base64.urlsafe_b64decode(raw.encode())) == 32
        except (binascii.Error, ValueError):
            valid = False
        if not valid:
            raise ValueError(
                f"SLUICE_SECRETS_KEY entry {number} is not a Fernet key (32 url-safe base64 "
                "bytes; make one with `python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`)"
            )
        found.append(raw.encode())
    return tuple(found)


# Ports below this need privileges the services never have (they run as a plain user).
LOWEST_ICE_PORT = 1024
_PORT_RANGE = re.compile(r"^\s*(\d+)\s*(?:-\s*(\d+)\s*)?$")
_ICE_URL = re.compile(r"^(stun|stuns|turn|turns):[^\s,]+$")


def parse_port_range(spec: str) -> range | None:
    """Parses `low-high` (or one port) into the ports it names; empty means none.

    Raises:
        ValueError: not `low-high`, `low` above `high`, or outside 1024-65535.
    """
    if not spec.strip():
        return None
    match = _PORT_RANGE.match(spec)
    if match is None:
        raise ValueError(f"SLUICE_ICE_UDP_PORTS {spec!r} must look like 50000-50999")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if not LOWEST_ICE_PORT <= low <= high <= 65535:
        raise ValueError(
            f"SLUICE_ICE_UDP_PORTS {spec!r} must be low-high with "
            f"{LOWEST_ICE_PORT} <= low <= high <= 65535"
        )
    return range(low, high + 1)


def parse_ice_servers(spec: str) -> list[str]:
    """Splits the comma-separated STUN/TURN URLs.

    Raises:
        ValueError: an entry is not a stun:, stuns:, turn: or turns: URL.
    """
    urls = [url.strip() for url in spec.split(",") if url.strip()]
    for url in urls:
        if not _ICE_URL.match(url):
            raise ValueError(
                f"SLUICE_ICE_SERVERS entry {url!r} must be a stun:, stuns:, turn: or turns: URL"
            )
    return urls
