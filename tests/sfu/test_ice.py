"""Loopback ICE: peers offer 127.0.0.1 and nothing else; servers come from settings."""

from __future__ import annotations

import aioice.ice
from aiortc import RTCPeerConnection

from sluice.config import Settings
from sluice.media.ice import _aioice_default, rtc_configuration, set_loopback


async def test_loopback_candidates_only() -> None:
    config = rtc_configuration(Settings(dev=True, ice_loopback=True))
    assert config.iceServers == []  # never aiortc's public STUN default
    pc = RTCPeerConnection(config)
    try:
        pc.addTransceiver("audio")
        await pc.setLocalDescription(await pc.createOffer())
        candidates = [
            line for line in pc.localDescription.sdp.splitlines() if line.startswith("a=candidate:")
        ]
        assert candidates
        assert all(line.split()[4] == "127.0.0.1" for line in candidates), candidates
    finally:
        await pc.close()


def test_ice_servers_and_switching_back() -> None:
    config = rtc_configuration(
        Settings(dev=True, ice_loopback=False, ice_servers="stun:stun.example:3478, turn:t:3478")
    )
    assert [s.urls for s in config.iceServers] == ["stun:stun.example:3478", "turn:t:3478"]
    assert aioice.ice.get_host_addresses is _aioice_default
    set_loopback(True)
    assert aioice.ice.get_host_addresses(True, True) == ["127.0.0.1"]
