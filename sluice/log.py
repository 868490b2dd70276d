"""structlog set-up: JSON lines in production, readable lines on a terminal."""

from __future__ import annotations

import logging
import sys
from typing import Any, TextIO

import structlog

# What this process's logging was last configured as: JSON or not, the level, the stream,
# and the processors handed to structlog (someone else configuring it replaces them).
_configured: tuple[bool, int, TextIO, list[Any]] | None = None


def configure_logging(fmt: str = "auto", level: str = "info", process: str = "") -> None:
    """Configures structlog and stdlib logging for this process.

    A forked process inherits its parent's configuration: when it asks for the same, only
    `process` changes. Configuring anew would run code and replace objects the parent
    shares with every child, copying their pages into each (an adapter process's memory).

    Args:
        fmt: `json`, `console`, or `auto` (console on a TTY, JSON otherwise).
        level: minimum level name.
        process: bound to every line as `process` (api, worker, sfu, ...).
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    global _configured
    if (
        _configured is None
        or _configured[:3] != (use_json, numeric, sys.stderr)
        or structlog.get_config()["processors"] is not _configured[3]
    ):
        _configured = (use_json, numeric, sys.stderr, _configure(use_json, numeric))
    if process:
        structlog.contextvars.bind_contextvars(process=process)


def _configure(use_json: bool, numeric: int) -> list[Any]:
    """Configures structlog and stdlib logging; returns the processors given to structlog."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    processors = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        renderer,
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)
    return processors
