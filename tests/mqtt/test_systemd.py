"""gunctl serve under systemd: ready once broker and guns are up, fed while the loops tick.

The test plays systemd with a notify socket of its own. The unit file shipped
in docs is checked with ``systemd-analyze verify`` where that exists. Serve
says at start what CPU priority the unit gave it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from mqtthost import Broker, logged_at_start, running

from gunctl.config import ServeSettings
from gunctl.systemd import FROZEN_S, Notifier, cpu_priority, watch

pytestmark = pytest.mark.mqtt

WATCHDOG_S = 0.4
UNIT = Path(__file__).resolve().parents[2] / "docs" / "gunctl.service"


class FakeSystemd:
    """The receiving end of NOTIFY_SOCKET: every message, as systemd would read it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    async def next(self, timeout: float) -> str:
        loop = asyncio.get_running_loop()
        data = await asyncio.wait_for(loop.sock_recv(self.sock, 4096), timeout)
        message = data.decode()
        self.messages.append(message)
        return message

    def drain(self) -> None:
        """Forget what arrived so far: the next count starts now."""
        with contextlib.suppress(BlockingIOError):
            while True:
                self.messages.append(self.sock.recv(4096).decode())

    async def count(self, field: str, seconds: float) -> int:
        """How many messages carrying ``field`` arrive within ``seconds``."""
        seen = 0
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                while True:
                    seen += field in (await self.next(seconds)).splitlines()
        return seen


@pytest.fixture
async def systemd(tmp_path: Path) -> AsyncIterator[FakeSystemd]:
    fake = FakeSystemd(tmp_path / "notify.sock")
    try:
        yield fake
    finally:
        fake.sock.close()


async def test_ready_then_watchdog_fed_until_a_control_loop_freezes(
    broker: Broker,
    make_settings: Callable[..., ServeSettings],
    systemd: FakeSystemd,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    env = {"NOTIFY_SOCKET": str(systemd.path), "WATCHDOG_USEC": str(int(WATCHDOG_S * 1e6))}
    notifier = Notifier.from_env(env)
    assert notifier.watchdog_s == WATCHDOG_S
    settings = make_settings(devices={"sim": 2}, time_scale=1.0)
    async with running(settings) as service:
        watcher = asyncio.create_task(watch(service, notifier))
        try:
            first = (await systemd.next(5)).splitlines()
            assert first[0] == "READY=1"  # broker and both guns up, and only then
            assert await systemd.count("WATCHDOG=1", 4 * WATCHDOG_S) >= 3

            # one gun's control loop hangs (a write that never returns): feeding stops
            frozen = next(iter(service.daemon.slots.values())).device
            assert frozen is not None
            hang = asyncio.Event()

            async def stuck() -> None:
                await hang.wait()

            # the tick's writes: the ticks after it wait for them, as for any write
            monkeypatch.setattr(frozen.supervisor, "_tick", lambda now: stuck)
            await asyncio.sleep(FROZEN_S + WATCHDOG_S)
            systemd.drain()
            assert await systemd.count("WATCHDOG=1", 3 * WATCHDOG_S) == 0

            monkeypatch.undo()  # it comes back: so does the feeding
            hang.set()
            assert await systemd.count("WATCHDOG=1", 4 * WATCHDOG_S) >= 2
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher


def test_no_watchdog_for_another_process() -> None:
    env = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "1"}
    assert Notifier.from_env(env).watchdog_s is None
    assert not Notifier.from_env({}).enabled


async def test_serve_says_at_start_what_cpu_priority_it_got(
    make_settings: Callable[..., ServeSettings],
) -> None:
    logged = await logged_at_start(make_settings(), "info")
    (priority,) = [e for e in logged if e["event"] == "cpu_priority"]
    assert priority["nice"] == os.getpriority(os.PRIO_PROCESS, 0)
    assert priority["policy"] == "other"


def test_the_cpu_weight_of_its_cgroup_is_read_where_there_is_one(tmp_path: Path) -> None:
    (line,) = [x for x in Path("/proc/self/cgroup").read_text().splitlines() if x[:3] == "0::"]
    own = tmp_path / line[3:].strip().lstrip("/")
    assert cpu_priority(tmp_path)["cpu_weight"] is None  # no CPU controller: no weight
    own.mkdir(parents=True, exist_ok=True)
    (own / "cpu.weight").write_text("1000\n")
    assert cpu_priority(tmp_path)["cpu_weight"] == 1000


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze here")
def test_the_unit_file_verifies(tmp_path: Path) -> None:
    unit = tmp_path / UNIT.name
    # verify wants ExecStart to exist: point it at this checkout's gunctl
    gunctl = Path(shutil.which("gunctl") or Path(__file__).parents[2] / ".venv/bin/gunctl")
    unit.write_text(UNIT.read_text().replace("/usr/local/bin/gunctl", str(gunctl)))
    result = subprocess.run(
        ["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    assert UNIT.name not in result.stderr, result.stderr  # a warning names the file
