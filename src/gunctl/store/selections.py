"""What each gun of ``gunctl serve`` is set to run next, kept across restarts.

Home Assistant's Protocol, Side and Intensity cap entities show the daemon's
choice. Lost on a restart, the page would show "unknown" and Start would be
refused with nothing chosen, so the choice is one small JSON file beside the
history. It is written whole, to a temporary file that is then renamed over the
old one, so a crash or a full disk leaves the previous choice, never half a
file. A file that cannot be read is reported and ignored: a choice is a
convenience, never a reason for the daemon not to start.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Annotated, Literal

import structlog
from pydantic import Field, ValidationError

from gunctl.datafile import DataModel

log = structlog.get_logger("gunctl.selections")

FILE_NAME = "selections.json"


class Selection(DataModel):
    """What a ``start`` with no arguments runs; set by ``select`` commands."""

    protocol: str | None = None
    side: Literal["left", "right", "both"] = "both"
    intensity_cap: Annotated[float, Field(gt=0.0, le=1.0)] = 1.0


class _File(DataModel):
    version: Literal[1] = 1
    devices: dict[str, Selection] = {}


def load(path: Path) -> dict[str, Selection]:
    """The saved choice of each device id; empty when there is none or it cannot be read."""
    try:
        text = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        log.warning("selections_unreadable", path=str(path), error=str(exc))
        return {}
    try:
        return dict(_File.model_validate_json(text).devices)
    except ValidationError as exc:
        log.warning("selections_invalid", path=str(path), error=str(exc).splitlines()[0])
        return {}


def save(path: Path, selections: dict[str, Selection]) -> None:
    """Replace the file with ``selections``; OSError if it cannot be written."""
    body = _File(devices=selections).model_dump_json(indent=1).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{FILE_NAME}.")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(body)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise
