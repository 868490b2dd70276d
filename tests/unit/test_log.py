"""sluice.log: configuring logging again, as a forked process does, changes only what differs."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterator

import pytest
import structlog

from sluice import log
from sluice.log import configure_logging


@pytest.fixture(autouse=True)
def _restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test configures logging on its own captured stderr; what it leaves is undone."""
    monkeypatch.setattr(log, "_configured", None)
    root = logging.getLogger()
    saved, handlers, level = structlog.get_config(), root.handlers[:], root.level
    yield
    structlog.configure(**saved)
    structlog.contextvars.clear_contextvars()
    root.handlers[:], root.level = handlers, level


def _line(capsys: pytest.CaptureFixture[str]) -> dict[str, object]:
    structlog.get_logger("test").info("something_happened")
    return dict(json.loads(capsys.readouterr().err.strip().splitlines()[-1]))


def test_the_same_configuration_again_keeps_structlog_as_it_is_and_binds_the_process(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("json", "info", process="worker")
    processors = structlog.get_config()["processors"]
    configure_logging("json", "info", process="pipeline")
    assert structlog.get_config()["processors"] is processors
    assert _line(capsys)["process"] == "pipeline"


def test_a_different_level_configures_anew(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "info", process="worker")
    processors = structlog.get_config()["processors"]
    configure_logging("json", "warning", process="worker")
    assert structlog.get_config()["processors"] is not processors
    structlog.get_logger("test").info("not_shown")
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize(
    "elsewhere",
    [
        lambda: structlog.configure(processors=[structlog.dev.ConsoleRenderer()]),
        lambda: structlog.configure(logger_factory=structlog.PrintLoggerFactory()),
        lambda: logging.basicConfig(force=True),
    ],
    ids=["structlog_processors", "structlog_logger_factory", "stdlib_root_handler"],
)
def test_a_configuration_made_elsewhere_is_replaced(
    capsys: pytest.CaptureFixture[str], elsewhere: Callable[[], None]
) -> None:
    configure_logging("json", "info", process="worker")
    handler = logging.getLogger().handlers[-1]
    elsewhere()
    configure_logging("json", "info", process="worker")
    assert _line(capsys)["event"] == "something_happened"
    assert logging.getLogger().handlers[-1] is not handler
