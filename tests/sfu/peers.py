"""Helpers for tests that wire aiortc peers together in-process (loopback ICE only)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiortc import RTCPeerConnection

from sluice.config import Settings
from sluice.media.ice import rtc_configuration

LOOPBACK = Settings(dev=True, ice_loopback=True)


def new_pc() -> RTCPeerConnection:
    return RTCPeerConnection(rtc_configuration(LOOPBACK))


async def negotiate(offerer: RTCPeerConnection, answerer: RTCPeerConnection) -> None:
    await offerer.setLocalDescription(await offerer.createOffer())
    await answerer.setRemoteDescription(offerer.localDescription)
    await answerer.setLocalDescription(await answerer.createAnswer())
    await offerer.setRemoteDescription(answerer.localDescription)


async def wait_for(predicate: Callable[[], bool], within: float, step: float = 0.02) -> None:
    """Polls a condition that has no event to wait on (test-only)."""
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError("condition not met in time")
        await asyncio.sleep(step)
