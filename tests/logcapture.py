"""Reading what gunctl logged at warning level, in a suite that logs errors only."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import structlog
from structlog.testing import capture_logs


@contextlib.contextmanager
def warnings_logged() -> Iterator[list[dict[str, Any]]]:
    """The log events of warning level and up, as dicts (the suite logs errors only)."""
    kept = structlog.get_config()["wrapper_class"]
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        with capture_logs() as logs:
            yield logs
    finally:
        structlog.configure(wrapper_class=kept)
