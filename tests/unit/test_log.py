"""sluice.log: configuring logging again, as a forked process does, changes only what differs."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import structlog

from sluice.log import configure_logging


@pytest.fixture(autouse=True)
def _restore_structlog() -> Iterator[None]:
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)
    structlog.contextvars.clear_contextvars()


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


def test_a_configuration_made_elsewhere_is_replaced(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("json", "info", process="worker")
    structlog.configure(processors=[structlog.dev.ConsoleRenderer()])
    configure_logging("json", "info", process="worker")
    assert _line(capsys)["event"] == "something_happened"
