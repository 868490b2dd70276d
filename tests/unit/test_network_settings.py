"""The deployment networking settings: port range, announced address, STUN/TURN servers."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sluice.config import Settings
from sluice.setting_parsers import parse_port_range


def test_port_range_parses() -> None:
    assert parse_port_range("") is None
    assert parse_port_range("50000-50999") == range(50_000, 51_000)
    assert parse_port_range(" 40000 - 40001 ") == range(40_000, 40_002)
    assert parse_port_range("50000") == range(50_000, 50_001)
    assert Settings(dev=True, ice_udp_ports="50000-50099").ice_port_range == range(50_000, 50_100)
    assert Settings(dev=True).ice_port_range is None


@pytest.mark.parametrize(
    "spec", ["50000-", "a-b", "50000:50010", "50010-50000", "80-90", "1-70000"]
)
def test_port_range_refuses(spec: str) -> None:
    with pytest.raises(ValidationError, match="SLUICE_ICE_UDP_PORTS"):
        Settings(dev=True, ice_udp_ports=spec)


def test_announced_ip() -> None:
    assert Settings(dev=True, sfu_announced_ip=" 203.0.113.7 ").sfu_announced_ip == "203.0.113.7"
    assert Settings(dev=True, sfu_announced_ip="2001:DB8::1").sfu_announced_ip == "2001:db8::1"
    for bad in ("media.example.com", "0.0.0.0", "224.0.0.1", "::"):
        with pytest.raises(ValidationError, match="SLUICE_SFU_ANNOUNCED_IP"):
            Settings(dev=True, sfu_announced_ip=bad)


def test_ice_servers() -> None:
    with pytest.raises(ValidationError, match="stun:, stuns:, turn: or turns:"):
        Settings(dev=True, ice_servers="stun.example.com:3478")
    with pytest.raises(ValidationError, match="SLUICE_ICE_USERNAME and SLUICE_ICE_CREDENTIAL"):
        Settings(dev=True, ice_servers="turn:turn.example.com:3478")
    settings = Settings(
        dev=True,
        ice_servers="stun:stun.example.com:3478,turns:turn.example.com:5349",
        ice_username="sluice",
        ice_credential="hunter2-but-longer",
    )
    assert settings.ice_server_urls == [
        "stun:stun.example.com:3478",
        "turns:turn.example.com:5349",
    ]
    # The credential never shows in a repr or a dump (logs, error messages).
    assert "hunter2" not in repr(settings)
    assert "hunter2" not in str(settings.model_dump())
