"""Three `gunctl run` processes at once on one muscle side never pass its 48-hour cap.

Each process books its plan's time in the exposure ledger beside the history
before its motor turns. Hamstrings on the left side books 94 s (two 45 s
holds, each with its ramp) against a 225 s cap: two sessions fit, the third is
refused whole, however the three starts interleave. Real time (a time scale
books nothing: a demo's minutes are not a person's), so the two that run are
stopped with Ctrl-C once the third has been refused.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gunctl.store.history import History

pytestmark = pytest.mark.slow

GUNCTL = str(Path(sys.executable).with_name("gunctl"))
CAP_S = 225.0  # hamstrings' per_48h_s_max in the shipped profiles


def test_three_runs_at_once_never_pass_the_cap(tmp_path: Path) -> None:
    env = {**os.environ, "GUNCTL_DATA_DIR": str(tmp_path / "data"), "COLUMNS": "120"}
    command = [GUNCTL, "run", "hamstrings", "--side", "left", "--sim", "--yes", "--json"]
    runs = [
        subprocess.Popen(
            command,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    try:
        # the refused one ends on its own; the others run their sessions in real time
        deadline = time.monotonic() + 30
        while not (refused := [r for r in runs if r.poll() is not None]):
            assert time.monotonic() < deadline, "no run was refused"
            time.sleep(0.05)
        assert len(refused) == 1, "no run was refused"
        (loser,) = refused
        _, err = loser.communicate()
        assert loser.returncode == 3, err
        assert "exposure_48h" in err
        running = [r for r in runs if r is not loser]
        for run in running:
            assert run.poll() is None  # still working the side: two sessions fit the cap
            run.send_signal(signal.SIGINT)
        for run in running:
            run.communicate(timeout=30)
            assert run.returncode == 130
    finally:
        for run in runs:
            if run.poll() is None:
                run.kill()
                run.wait()
    with History(tmp_path / "data" / "history.sqlite3") as store:
        assert store.exposure_s("hamstrings", "left", simulated=True) <= CAP_S
        sessions = store.sessions(simulated=True)
    stopped = [s for s in sessions if s.end_reason == "stopped"]
    assert len(stopped) == 2  # the two that fit ran until Ctrl-C
    (refused,) = [s for s in sessions if s not in stopped]
    assert refused.worked_s == 0.0  # its motor never turned
    assert not refused.muscles
