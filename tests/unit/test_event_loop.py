"""`SLUICE_EVENT_LOOP` picks the loop a pipeline runs on (`sluice.event_loop`)."""

from __future__ import annotations

import asyncio

import pytest
import uvloop

from sluice import event_loop
from sluice.config import Settings


async def running_loop_type() -> type[asyncio.AbstractEventLoop]:
    return type(asyncio.get_running_loop())


def test_uvloop_is_the_default() -> None:
    assert Settings(apps="a:s").event_loop == "uvloop"
    assert event_loop.run(running_loop_type(), "uvloop") is uvloop.Loop


def test_asyncio_turns_it_off() -> None:
    loop_type = event_loop.run(running_loop_type(), "asyncio")
    assert not issubclass(loop_type, uvloop.Loop)
    assert issubclass(loop_type, asyncio.BaseEventLoop)


def test_an_unknown_loop_is_refused_naming_the_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SLUICE_EVENT_LOOP", "trio")
    with pytest.raises(ValueError, match="event_loop"):
        Settings(apps="a:s")
