from __future__ import annotations

import pytest

from sluice.config import Settings
from sluice.setting_parsers import parse_apps
from sluice.state.records import AdapterRecord, Direction, redact_endpoint


@pytest.mark.parametrize(
    ("endpoint", "shown"),
    [
        ("wss://user:pw@example.com:8443/a/b?token=x#frag", "wss://example.com:8443/a/b"),
        ("ws://[::1]:9000/x?k=v", "ws://[::1]:9000/x"),
        ("ws://host/", "ws://host/"),
    ],
)
def test_redacted_endpoints_hide_secrets(endpoint: str, shown: str) -> None:
    assert redact_endpoint(endpoint) == shown


def test_record_round_trips_through_a_hash() -> None:
    record = AdapterRecord(
        adapter_id="a",
        app_id="b",
        direction=Direction.INGEST,
        session_id="s",
        track_name="t",
        endpoint="ws://h/",
        codec="pcm",
    )
    record.counters["bytes"] = 9
    assert AdapterRecord.from_hash(record.to_hash()) == record


def test_apps_parse_and_reject_garbage() -> None:
    assert parse_apps("a:1, b:two:colons") == {"a": "1", "b": "two:colons"}
    for bad in ("a", "a:", ":x", "a:1,a:2"):
        with pytest.raises(ValueError):
            parse_apps(bad)


def test_production_requires_apps_and_dev_adds_demo() -> None:
    with pytest.raises(ValueError, match="SLUICE_APPS"):
        Settings(apps="", dev=False)
    assert Settings(apps="", dev=True).app_secrets == {"demo": "demo"}
    assert Settings(apps="x:y", dev=False).app_secrets == {"x": "y"}


def test_lua_scripts_build_keys_the_way_keys_py_names_them() -> None:
    import re

    from sluice.state import keys
    from sluice.state.scripts import NAMES, lua

    def lua_key(expression: str, **values: str) -> str:
        """Evaluates a Lua concatenation of PREFIX, string literals and variables."""
        parts = [p.strip() for p in expression.split("..")]
        env = {"PREFIX": keys.PREFIX, **values}
        return "".join(p[1:-1] if p.startswith("'") else env[p] for p in parts)

    prelude = lua("create")
    builders = dict(re.findall(r"local function (\w+)\([^)]*\) return ([^\n]+) end", prelude))
    assert lua_key(builders["adapter_key"], id="X") == keys.adapter("X")
    assert lua_key(builders["app_key"], app="A", what="adapters") == keys.app_adapters("A")
    assert lua_key(builders["app_key"], app="A", what="live") == keys.app_live("A")
    assert keys.adapter_events("X") == keys.adapter("X") + ":events"  # `key .. ':events'`
    assert keys.adapter_headers("X") == keys.adapter("X") + ":headers"  # `key .. ':headers'`
    fixed = {keys.METRICS, keys.PENDING, keys.RESUMING, keys.WEBHOOK_OUTBOX}
    for name in NAMES:
        source = lua(name)
        assert "@PREFIX@" not in source and "'sluice:" not in source  # all through PREFIX
        for suffix in re.findall(r"PREFIX \.\. '(:\w+)'(?! \.\.)", source):
            assert keys.PREFIX + suffix in fixed, (name, suffix)
    usage = lua_key("PREFIX .. ':usage:' .. app .. ':' .. hour", app="A", hour="7")
    assert usage == keys.usage("A", 7)
    assert "PREFIX .. ':usage:' .. app .. ':' .." in lua("close")
