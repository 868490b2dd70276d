"""structlog set-up: JSON lines in production, readable lines on a terminal."""

from __future__ import annotations

import logging
import operator
import sys
from dataclasses import dataclass
from typing import Any, TextIO

import structlog


@dataclass(frozen=True, slots=True)
class _Configured:
    """What `configure_logging` last asked for and the objects it installed for that."""

    use_json: bool
    level: int
    stream: TextIO
    structlog_config: tuple[Any, ...]  # processors, wrapper class, logger factory
    root_handler: logging.Handler

    def in_place(self, use_json: bool, level: int) -> bool:
        """The same was asked, and nobody has configured logging otherwise since."""
        return (
            (self.use_json, self.level, self.stream) == (use_json, level, sys.stderr)
            and all(map(operator.is_, self.structlog_config, _structlog_config()))
            and self.root_handler in logging.getLogger().handlers
        )


_configured: _Configured | None = None


def configure_logging(fmt: str = "auto", level: str = "info", process: str = "") -> None:
    """Configures structlog and stdlib logging for this process.

    A forked process inherits its parent's configuration: when it asks for the same, and
    nothing configured logging otherwise in between, only `process` changes. Configuring
    anew would run code and replace objects the parent shares with every child, copying
    their pages into each (an adapter process's memory).

    Args:
        fmt: `json`, `console`, or `auto` (console on a TTY, JSON otherwise).
        level: minimum level name.
        process: bound to every line as `process` (api, worker, sfu, ...).
    """
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
    global _configured
    if _configured is None or not _configured.in_place(use_json, numeric):
        _configure(use_json, numeric)
        root_handler = logging.getLogger().handlers[-1]
        _configured = _Configured(use_json, numeric, sys.stderr, _structlog_config(), root_handler)
    if process:
        structlog.contextvars.bind_contextvars(process=process)


def _structlog_config() -> tuple[Any, ...]:
    config = structlog.get_config()
    return config["processors"], config["wrapper_class"], config["logger_factory"]


def _configure(use_json: bool, numeric: int) -> None:
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=sys.stderr, force=True)
