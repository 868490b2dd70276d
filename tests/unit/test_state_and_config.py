from __future__ import annotations

import pytest

from sluice.config import Settings, parse_apps
from sluice.state import AdapterRecord, Direction, redact_endpoint


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
    from sluice import keys, store

    # Scripts that act on adapters found by scanning build their keys from ids.
    assert keys.adapter("X") == "sluice:adapter:X"
    assert keys.adapter_events("X") == "sluice:adapter:X:events"
    assert keys.app_adapters("A") == "sluice:app:A:adapters"
    assert keys.app_live("A") == "sluice:app:A:live"
    assert "'sluice:adapter:' .. id" in store.REAP_LUA
    assert "key .. ':events'" in store.REAP_LUA
    assert "'sluice:app:' .. app .. ':adapters'" in store.REAP_LUA
    assert "'sluice:app:' .. app .. ':live'" in store.REAP_LUA
