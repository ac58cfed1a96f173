"""The daemon's choice of protocol, side and cap per gun: kept across restarts, never a blocker."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gunctl.config import load_settings
from gunctl.daemon import Daemon
from gunctl.logs import configure
from gunctl.requests import SelectCommand
from gunctl.store import selections
from gunctl.store.history import History
from gunctl.store.selections import Selection


def _daemon(data: Path) -> Daemon:
    settings = load_settings(None, node_id="n1", devices={"sim": 2}, intensity_cap=0.8)
    return Daemon(settings, history=History(data / "history.sqlite3"))


async def test_a_choice_is_kept_for_the_next_start_of_the_daemon(tmp_path: Path) -> None:
    first = _daemon(tmp_path)
    done = await first.execute(
        "sim-n1-1", SelectCommand(action="select", protocol="piriformis", intensity_cap=0.4)
    )
    assert "warning" not in done
    await first.execute("sim-n1-2", SelectCommand(action="select", side="left"))

    again = _daemon(tmp_path)
    assert again.slots["sim-n1-1"].selected == Selection(
        protocol="piriformis", side="both", intensity_cap=0.4
    )
    # a gun never chosen for keeps the configured cap
    assert again.slots["sim-n1-2"].selected == Selection(side="left", intensity_cap=0.8)


@pytest.fixture
def warnings() -> Iterator[io.StringIO]:
    """The log at warning level, as JSON lines, for the length of a test."""
    stream = io.StringIO()
    configure(json=True, level="warning", stream=stream)
    yield stream
    configure(json=True, level="error")  # as tests/conftest.py has it


def test_a_damaged_or_stale_file_is_reported_and_passed_over(
    tmp_path: Path, warnings: io.StringIO
) -> None:
    path = tmp_path / selections.FILE_NAME
    path.write_bytes(b"\x89PNG\r\n\x1a\n not json")
    daemon = _daemon(tmp_path)
    assert daemon.slots["sim-n1-1"].selected == Selection(intensity_cap=0.8)
    logged = [json.loads(line)["event"] for line in warnings.getvalue().splitlines()]
    assert logged == ["selections_invalid"]

    # a protocol that has since been removed is dropped, the rest kept
    selections.save(path, {"sim-n1-1": Selection(protocol="gone", side="right")})
    kept = _daemon(tmp_path).slots["sim-n1-1"].selected
    assert kept == Selection(protocol=None, side="right")


async def test_a_choice_that_cannot_be_saved_still_applies_and_says_so(tmp_path: Path) -> None:
    daemon = _daemon(tmp_path)
    (tmp_path / selections.FILE_NAME).mkdir()  # nothing can be renamed over a folder
    done = await daemon.execute("sim-n1-1", SelectCommand(action="select", side="right"))
    assert daemon.slots["sim-n1-1"].selected.side == "right"
    assert "not kept" in done["warning"]
