"""The API app with its Redis clients on fakeredis, for routes that only read and render."""

from __future__ import annotations

import fakeredis
import pytest
from fastapi.testclient import TestClient

from api import main
from sluice.config import Settings


def api_client(
    settings: Settings, server: fakeredis.FakeServer, monkeypatch: pytest.MonkeyPatch
) -> TestClient:
    """A client of `create_app(settings)` whose both clients use `server` (enter it)."""
    monkeypatch.setattr(
        main,
        "async_client",
        lambda _: fakeredis.FakeAsyncRedis(server=server, decode_responses=True),
    )
    monkeypatch.setattr(main, "sync_client", lambda _: fakeredis.FakeRedis(server=server))
    return TestClient(main.create_app(settings), base_url=settings.public_url)
