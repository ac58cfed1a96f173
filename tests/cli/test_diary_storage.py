"""Recording a score when the data folder's disk is full or read-only, as a person meets it.

Each runs real ``gunctl`` processes in a private mount namespace on a small
tmpfs (``unshare -m``: nothing is mounted outside the test), fills it or
remounts it read-only, and checks the one line the person reads, the exit
code, and that the diary holds exactly what was recorded before: nothing
half-written, and no advice to move an intact history aside.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gunctl.errors import EXIT_STORAGE

pytestmark = pytest.mark.slow
GUNCTL = Path(sys.executable).parent / "gunctl"


def _can_mount() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return False
    probe = subprocess.run([unshare, "-m", "mount", "-t", "tmpfs", "tmpfs", "/mnt"], check=False)
    return probe.returncode == 0


needs_mount = pytest.mark.skipif(not _can_mount(), reason="needs root and mount namespaces")


def on_small_disk(tmp_path: Path, steps: str) -> list[str]:
    """Run ``steps`` (sh) with $G the gunctl binary and the data folder on a 256 KiB tmpfs."""
    disk = tmp_path / "disk"
    disk.mkdir()
    script = f'set -u\nmount -t tmpfs -o size=256k tmpfs "$D"\n{steps}'
    env = {**os.environ, "D": str(disk), "G": str(GUNCTL), "GUNCTL_DATA_DIR": str(disk / "data")}
    env.pop("GUNCTL_TEST_NOW", None)
    done = subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return (done.stdout + done.stderr).splitlines()


def befores(lines: list[str]) -> list[float | None]:
    document = json.loads("\n".join(lines[lines.index("{") : lines.index("}") + 1]))
    return [w["before"] for w in document["weeks"]]


@needs_mount
def test_a_full_disk_says_so_and_keeps_the_diary_whole(tmp_path: Path) -> None:
    lines = on_small_disk(
        tmp_path,
        """
        $G diary score --before --pain 3
        dd if=/dev/zero of="$D/fill" bs=4k 2>/dev/null
        $G diary score --before --pain 9 2>&1; echo "code $?"
        $G diary seen 2>&1; echo "code $?"
        rm "$D/fill"
        $G diary --weeks 1 --json
        """,
    )
    assert f"code {EXIT_STORAGE}" in lines
    full = [line for line in lines if "is full" in line]
    assert len(full) == 2, lines
    assert "free some space on it and try again: the history itself is intact" in full[0]
    assert not any("damaged" in line or "mv " in line for line in lines), lines
    assert befores(lines) == [3.0]  # the 9 left no trace, the visit none either


@needs_mount
def test_a_read_only_disk_says_so_and_still_shows_the_diary(tmp_path: Path) -> None:
    lines = on_small_disk(
        tmp_path,
        """
        $G diary score --before --pain 4
        mount -o remount,ro "$D"
        $G diary score --before --pain 9 2>&1; echo "code $?"
        $G diary --weeks 1 --json
        """,
    )
    assert f"code {EXIT_STORAGE}" in lines
    (refused,) = [line for line in lines if "read-only" in line]
    assert refused.startswith("gunctl: the history at")
    assert "GUNCTL_DATA_DIR" in refused
    assert befores(lines) == [4.0]
