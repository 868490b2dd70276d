"""Pins the client libraries' per-call paths that a pipeline's create would otherwise pay.

A pipeline opens its Redis connections and makes its HTTP calls to the SFU in the few
milliseconds between fork and `active`; each of these was found costing ~1 ms in every
create (docs/performance.md, "create → active"). They depend on the libraries' internals:
an upgrade that reshapes one fails here, not as a slower create nobody notices.
"""

from __future__ import annotations

import asyncio
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

import httpcore._synchronization
import pytest
import redis.utils

from sluice.config import Settings
from sluice.state.connection import async_client, sync_client


class _RecordingFinder(importlib.abc.MetaPathFinder):
    """Sees every import the module cache could not answer."""

    def __init__(self) -> None:
        self.names: list[str] = []

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        self.names.append(fullname)
        return None


def test_redis_connections_do_not_read_package_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    # redis-py 7.2+ reads its version from the installed package's metadata per connection
    # unless the client is given the driver info (sluice.state.connection.CLIENT_NAMING).
    read: list[str] = []
    monkeypatch.setattr(redis.utils.metadata, "version", lambda name: read.append(name) or "0")
    settings = Settings(apps="app1:secret1", redis_url="redis://127.0.0.1:1/0")
    sync_client(settings).connection_pool.make_connection()
    async_client(settings).connection_pool.make_connection()
    assert read == []


def test_httpcore_learns_the_event_loop_without_an_import() -> None:
    # httpcore asks `import sniffio` at every lock it takes: without sniffio installed
    # (pyproject), each ask searches sys.path for it and fails.
    finder = _RecordingFinder()

    async def ask() -> str:
        return httpcore._synchronization.current_async_library()

    sys.meta_path.insert(0, finder)
    try:
        assert asyncio.run(ask()) == "asyncio"
    finally:
        sys.meta_path.remove(finder)
    assert finder.names == []


def test_a_write_on_a_transport_uvloop_closed_counts_as_a_lost_redis_connection() -> None:
    from redis.exceptions import ConnectionError as RedisConnectionError

    from sluice.state.connection import redis_connection_lost

    closed = RuntimeError(
        "unable to perform operation on <TCPTransport closed=True reading=False 0x1>; "
        "the handler is closed"
    )
    assert redis_connection_lost(closed)
    assert redis_connection_lost(RedisConnectionError("Connection closed by server."))
    assert redis_connection_lost(ConnectionRefusedError())
    assert not redis_connection_lost(RuntimeError("a bug"))
    assert not redis_connection_lost(ValueError("a bug"))
