"""Logging: structlog events, as JSON lines for machines or readable lines for people.

Every decision the Supervisor makes is a structlog event with plain, JSON-able
values, so a daemon's log can be replayed or searched. Logs go to stderr;
stdout belongs to a command's output.
"""

from __future__ import annotations

import logging
import sys
from typing import TextIO

import structlog


def configure(*, json: bool = False, level: str = "warning", stream: TextIO | None = None) -> None:
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=False,
    )
