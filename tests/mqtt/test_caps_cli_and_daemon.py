"""Three `gunctl run` processes and two guns of a daemon, at once on one muscle side.

They share the exposure ledger beside the history (one data folder): whichever
books first, no more sessions start than the side's 48-hour cap holds.
Hamstrings on the left books 94 s against a 225 s cap, so two of the five
starts go ahead and three are refused. Real time (a time scale books nothing).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from mqtthost import Broker, running, watching

from gunctl.config import ServeSettings
from gunctl.store.history import History

pytestmark = pytest.mark.mqtt

GUNCTL = str(Path(sys.executable).with_name("gunctl"))
CAP_S = 225.0  # hamstrings' per_48h_s_max in the shipped profiles
START = {"action": "start", "protocol": "hamstrings", "side": "left"}


async def cli_run(data: Path) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *[GUNCTL, "run", "hamstrings", "--side", "left", "--sim", "--yes", "--json"],
        env={**os.environ, "GUNCTL_DATA_DIR": str(data)},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def started(run: asyncio.subprocess.Process) -> bool:
    """True once the run's session starts; False if it ends first (refused)."""
    assert run.stdout is not None
    async with asyncio.timeout(60):
        while line := await run.stdout.readline():
            if line.startswith(b"{") and json.loads(line)["type"] == "session_started":
                return True
    assert await run.wait() == 3  # refused: a safety rule, exposure_48h
    return False


async def test_three_cli_runs_and_two_daemon_guns_never_pass_the_cap(
    broker: Broker, make_settings: Callable[..., ServeSettings], tmp_path: Path
) -> None:
    data = tmp_path / "data"
    settings = make_settings(devices={"sim": 2, "sim_spec": "gunctl-open"}, time_scale=1.0)
    async with running(settings, data) as service:
        topics = service.bridge.topics
        async with watching(broker, topics, f"{topics.base}/#") as watcher:
            runs = [await cli_run(data) for _ in range(3)]
            try:
                daemon = await asyncio.gather(
                    *(watcher.command(gun, START) for gun in service.daemon.slots)
                )
                cli = await asyncio.gather(*(started(run) for run in runs))
                refusals = [r for r in daemon if not r["ok"]]
                assert all("exposure_48h" in json.dumps(r) for r in refusals), refusals
                assert sum(r["ok"] for r in daemon) + sum(cli) == 2, (daemon, cli)
                for gun in service.daemon.slots:
                    await watcher.command(gun, {"action": "stop"})
            finally:
                for run in runs:
                    if run.returncode is None:
                        run.send_signal(signal.SIGINT)
                        await run.wait()
    with History(data / "history.sqlite3") as store:
        assert store.exposure_s("hamstrings", "left", simulated=True) <= CAP_S
        # a refused start, from a run or the daemon, leaves no row in the history
        assert len(store.sessions()) == 2, [
            (s.source, s.status, s.end_reason) for s in store.sessions()
        ]
