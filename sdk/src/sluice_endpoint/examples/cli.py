"""What the runnable examples share: options, attaching an adapter, running until Ctrl+C.

Each example serves its endpoint, then asks Sluice's API to create the adapter that
dials it (by default the API of `make run`: app `demo`, secret `demo`), and closes that
adapter again when it stops.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import Any

import httpx

from sluice_endpoint.client import AsyncSluiceClient, CreatedAdapter, EgressItem, IngestItem
from sluice_endpoint.errors import SluiceEndpointError
from sluice_endpoint.examples.espeak import SynthesisError
from sluice_endpoint.examples.speech import SpeechError

DEFAULT_API = "http://127.0.0.1:8080/v1/apps/demo"
EXPECTED_ERRORS = (SluiceEndpointError, SpeechError, SynthesisError, httpx.HTTPError, OSError)


def parser(name: str, description: str | None) -> argparse.ArgumentParser:
    """The options every example takes; `name` is its module, e.g. `stt`."""
    found = argparse.ArgumentParser(
        prog=f"python -m sluice_endpoint.examples.{name}",
        description=description,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    found.add_argument("--api", default=DEFAULT_API, help="Sluice's API, up to the app")
    found.add_argument("--secret", default="demo", help="the app's secret")
    found.add_argument("--host", default="127.0.0.1", help="address to serve the endpoint on")
    found.add_argument("--port", type=int, default=0, help="its port (0: any free one)")
    return found


def add_source(found: argparse.ArgumentParser, kind: str) -> None:
    """--session and --track: the track to take (from the demo page, for instance)."""
    found.add_argument("--session", required=True, help=f"the session publishing the {kind}")
    found.add_argument("--track", required=True, help=f"the {kind} track's name")


def say(line: str) -> None:
    """A line for the person at the terminal (stdout carries the example's output)."""
    print(line, file=sys.stderr, flush=True)


@contextlib.asynccontextmanager
async def attached(
    api: AsyncSluiceClient, item: EgressItem | IngestItem
) -> AsyncIterator[CreatedAdapter]:
    """Creates the adapter `item`; closes it on the way out.

    Raises:
        ApiError: Sluice refused it (the answer's `errorCode` says why).
    """
    created = await api.create_adapter(item)
    assert created.adapter_id is not None
    try:
        yield created
    finally:
        with contextlib.suppress(SluiceEndpointError, httpx.HTTPError):
            await api.close_adapter(created.adapter_id)


def run(prog: str, main: Callable[[asyncio.Event], Awaitable[int]]) -> int:
    """Runs `main(stop)` until it returns; Ctrl+C or SIGTERM set `stop`.

    The errors a user can cause (Sluice unreachable or refusing, an engine missing)
    are one line on stderr and exit status 1, not a traceback.
    """
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        return await main(stop)

    try:
        return asyncio.run(runner())
    except EXPECTED_ERRORS as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1


async def first_of(*coroutines: Coroutine[Any, Any, object]) -> None:
    """Runs the coroutines until one of them finishes, then cancels the others (an
    exception from the one that finished is raised)."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
