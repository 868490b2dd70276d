"""Which event loop a Sluice process runs: `SLUICE_EVENT_LOOP` (`uvloop` or `asyncio`).

A pipeline spends most of its time in per-datagram work (ICE, SRTP, RTP, the WebSocket
send), which libuv's loop does for less CPU than the standard library's selector loop;
`asyncio` is the way back should a library misbehave under uvloop. uvicorn (the SFU
nodes and the API) takes the same name for its `loop` option.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any, Literal, TypeVar

EventLoopName = Literal["uvloop", "asyncio"]
T = TypeVar("T")


def loop_factory(name: EventLoopName) -> Callable[[], asyncio.AbstractEventLoop]:
    """What creates a new event loop of that kind (for `asyncio.Runner`)."""
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop
    return asyncio.new_event_loop


def run(main: Coroutine[Any, Any, T], name: EventLoopName) -> T:
    """`asyncio.run(main)` on a new loop of that kind."""
    with asyncio.Runner(loop_factory=loop_factory(name)) as runner:
        return runner.run(main)
