"""docs/new-gun.md runs: every ``sh`` block, in order, in a fresh folder.

``console`` blocks need a phone or a gun and are shown only. The session the
walk-through records with ``gunsim record`` (in virtual time, so the same on
any machine) must have its moments where the document's marks say they are.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from gunctl.capture import Capture

DOC = Path(__file__).parent.parent / "docs" / "new-gun.md"
BIN = Path(sys.executable).parent

pytestmark = pytest.mark.slow


def sh_blocks(text: str) -> list[str]:
    return re.findall(r"^```sh\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_the_walk_through_runs(tmp_path: Path) -> None:
    blocks = sh_blocks(DOC.read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "COLUMNS": "120"}
    for block in blocks:
        done = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", block],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, f"{block}\n{done.stdout}\n{done.stderr}"
        assert "Traceback" not in done.stderr
    draft = (tmp_path / "my-gun.yaml").read_text()
    assert "kind: crc16-ccitt" in draft
    assert "name: my-gun" in draft


def test_the_marks_name_the_recorded_moments(tmp_path: Path) -> None:
    session = tmp_path / "session.log"
    command = sh_blocks(DOC.read_text(encoding="utf-8"))[0].strip()
    assert command == "gunsim record gunctl-open --output session.log"
    subprocess.run(
        [BIN / "gunsim", "record", "gunctl-open", "--output", str(session)],
        check=True,
        capture_output=True,
    )
    writes = {r.value.hex(): r.t for r in Capture(session).records() if r.direction == "host"}
    assert 3.5 <= writes["a501020807a5f9"] < 3.7  # set speed 1800
    assert 11.5 <= writes["a5020092fc"] < 11.7  # stop
