"""Driving the examples' endpoints against a real stack."""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from tests.integration.helpers import Stack


async def create(stack: Stack, item: dict[str, str]) -> dict[str, Any]:
    async with stack.client() as client:
        resp = await client.post("/adapters/websocket/new", json={"tracks": [item]})
    assert resp.status_code == 200, resp.text
    return dict(resp.json()["tracks"][0])


async def close(stack: Stack, adapter_id: str) -> None:
    async with stack.client() as client:
        resp = await client.post(
            "/adapters/websocket/close", json={"tracks": [{"adapterId": adapter_id}]}
        )
    assert resp.status_code == 200, resp.text


async def wait(event: asyncio.Event, timeout_s: float = 5.0) -> None:
    await asyncio.wait_for(event.wait(), timeout_s)


def read_wav(path: Path) -> tuple[int, npt.NDArray[np.float64]]:
    """(rate, samples by channels) of a 16-bit WAV."""
    with wave.open(str(path), "rb") as wav:
        assert wav.getsampwidth() == 2
        rate, channels = wav.getframerate(), wav.getnchannels()
        data = np.frombuffer(wav.readframes(wav.getnframes()), "<i2")
    return rate, data.reshape(-1, channels).astype(np.float64)
