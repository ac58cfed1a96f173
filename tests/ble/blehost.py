"""Test support for the bleak tests: the fake's guns, a host that drives a BleakLink, and a
watcher that follows a Supervisor's session over it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from gunctl.clock import Clock
from gunctl.control.events import ENDING_EVENTS, Event
from gunctl.devices import Device
from gunctl.heads import Head
from gunctl.links.base import Endpoint, Link, Notification
from gunctl.profiles.loader import load_catalogue
from gunctl.profiles.plan import Plan, make_plan
from gunctl.requests import SessionAction
from gunctl.resources import shipped
from gunctl.specs.codec import Codec, DecodeError
from gunctl.specs.messages import (
    Command,
    Keepalive,
    Report,
    SetLevel,
    SetSpeed,
    Status,
    StatusRequest,
    Stop,
)
from gunctl.specs.models import DeviceSpec, KeepaliveStrategy, TelemetryMode
from gunsim import SimDevice
from gunsim.bluez import FakeBluez, Peripheral

SHORT = 3.0  # seconds: the bound on anything that should happen at once


@dataclass
class Guns:
    fake: FakeBluez
    clock: Clock
    named: dict[str, Peripheral] = field(default_factory=dict)
    anonymous: dict[str, Peripheral] = field(default_factory=dict)
    extra: list[SimDevice] = field(default_factory=list)  # devices a test added; closed after

    async def add(self, spec: DeviceSpec, **options: Any) -> Peripheral:
        device = SimDevice(spec, clock=self.clock, seed=len(self.extra) + 500)
        await device.start()
        self.extra.append(device)
        return self.fake.add(device, **options)


async def eventually(check: Callable[[], bool], timeout: float = SHORT) -> None:
    """Wait until ``check()`` holds, polling; fail after ``timeout`` seconds."""
    for _ in range(int(timeout / 0.02) + 1):
        if check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"still not true after {timeout} s")


def run_command(spec: DeviceSpec) -> Command:
    """A command that starts the motor at a middling speed."""
    levels = spec.capabilities.levels_ppm
    if levels is not None:
        return SetLevel(level=3)
    assert spec.capabilities.speed is not None
    return SetSpeed(ppm=2400 if spec.capabilities.speed.max_ppm >= 2400 else 1800)


class BleHost:
    """Codec, keepalives, polling and a record of every notification, over any Link."""

    def __init__(self, link: Link, spec: DeviceSpec) -> None:
        self.link = link
        self.spec = spec
        self.codec = Codec(spec)
        self.notes: list[Notification] = []
        self.reports: list[Report] = []
        self.decode_errors: list[DecodeError] = []
        self.last: Command = run_command(spec)
        self._tasks: list[asyncio.Task[None]] = []
        self._changed = asyncio.Event()

    async def start(self) -> None:
        await self.link.connect()
        self._tasks.append(asyncio.create_task(self._listen()))

    async def send(self, command: Command) -> None:
        self.last = command
        await self.link.write(
            Endpoint.COMMAND,
            self.codec.encode_command(command),
            with_response=self.codec.with_response(command),
        )

    def keep_alive(self) -> None:
        """Keepalives (and polls, for polled telemetry) as the Supervisor would send them."""
        self._tasks.append(asyncio.create_task(self._background()))

    async def wait_for(self, test: Any, timeout: float = SHORT) -> Status:
        async def until() -> Status:
            while True:
                for report in self.reports:
                    if isinstance(report, Status) and test(report):
                        return report
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(until(), timeout)

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.link.disconnect()

    async def _listen(self) -> None:
        async for note in self.link.notifications():
            self.notes.append(note)
            if note.endpoint is Endpoint.TELEMETRY:
                try:
                    self.reports.append(self.codec.decode_report(note.data))
                except DecodeError as exc:
                    self.decode_errors.append(exc)
            self._changed.set()
        self._changed.set()

    async def _background(self) -> None:
        caps = self.spec.capabilities
        keepalive = caps.keepalive
        polled = caps.telemetry.mode is TelemetryMode.POLL
        period = min(keepalive.period_s or 1.0, caps.telemetry.period_s if polled else 1.0, 0.2)
        while self.link.connected:
            if keepalive.strategy is KeepaliveStrategy.FIXED:
                await self.send(Keepalive())
            elif keepalive.strategy is KeepaliveStrategy.REPEAT_LAST:
                await self.send(self.last)
            if polled:
                await self.link.write(
                    Endpoint.COMMAND,
                    self.codec.encode_command(StatusRequest()),
                    with_response=self.codec.with_response(StatusRequest()),
                )
            await asyncio.sleep(period)


def short_plan(
    spec: DeviceSpec, *, steps: int = 1, hold_s: float = 2.0, ramp_s: float = 0.5
) -> Plan:
    """The glute protocol's first steps on the left side, each held for seconds, not tens.

    Over D-Bus a session runs in real time. A plan made in code may be shorter
    than any profile file allows; every cap still comes from the catalogue.
    """
    catalogue = load_catalogue(None)
    plan = make_plan(catalogue.protocols["glute"], catalogue.muscles, spec, side="left")
    short = [
        s.model_copy(update={"hold_s": hold_s, "ramp_s": ramp_s, "rest_s": 0.0})
        for s in plan.steps[:steps]
    ]
    return plan.model_copy(update={"steps": short})


def is_stop(command: Command) -> bool:
    return isinstance(command, Stop) or (isinstance(command, SetSpeed) and command.ppm == 0)


class Watch:
    """A Supervisor's events as they arrive, each with the clock time it arrived.

    Head changes are made as a person would make them: the head asked for is
    fitted on the simulated gun, then confirmed.
    """

    def __init__(self, device: Device, gun: SimDevice) -> None:
        self.device = device
        self.gun = gun
        self.events: list[Event] = []
        self.arrived: list[float] = []
        self._changed = asyncio.Event()
        self._subscription = device.supervisor.bus.subscribe()
        self._tasks = [asyncio.create_task(self._follow())]

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.type == kind]

    async def until(self, kind: str, timeout: float = SHORT) -> Any:
        """The first event of ``kind``, waiting up to ``timeout`` seconds for it."""

        async def first() -> Event:
            while True:
                for event in self.events:
                    if event.type == kind:
                        return event
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(first(), timeout)

    async def end(self, timeout: float) -> Any:
        """The event that ended the session, completed or aborted."""

        async def ending() -> Event:
            while True:
                for event in self.events:
                    if isinstance(event, ENDING_EVENTS):
                        return event
                self._changed.clear()
                await self._changed.wait()

        return await asyncio.wait_for(ending(), timeout)

    async def close(self) -> None:
        self._subscription.close()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _follow(self) -> None:
        clock = self.device.supervisor.clock
        async for event in self._subscription:
            self.events.append(event)
            self.arrived.append(clock.now())
            self._changed.set()
            if event.type == "head_change_required":
                self.gun.fit_head(Head(event.step.head))
                self._tasks.append(
                    asyncio.create_task(
                        self.device.supervisor.request(SessionAction("confirm_head"))
                    )
                )


# One short hold. Profile files hold a point for 30 s at the least, which is too
# long for a test in real time, so the test's own muscles.yaml lets this muscle
# be held for as little as 2 s; every other limit stays as shipped.
QUICK = """\
name: quick
title: Quick check
description: One short hold, for tests over the fake BlueZ or a fake proxy.
steps:
  - {muscle: gluteus-maximus, side: left, head: ball, intensity: 0.4, hold_s: 3,
     ramp_s: 0.5, rest_s: 0, placement: Middle of the buttock.}
"""


def quick_profiles(tmp_path: Path) -> Path:
    folder = tmp_path / "profiles"
    (folder / "protocols").mkdir(parents=True)
    (folder / "protocols" / "quick.yaml").write_text(QUICK)
    yaml = YAML()
    muscle = dict(yaml.load(shipped("profiles") / "muscles.yaml")["muscles"]["gluteus-maximus"])
    muscle["hold_s"] = {"min": 2, "max": 90}
    with (folder / "muscles.yaml").open("w") as f:
        yaml.dump({"muscles": {"gluteus-maximus": muscle}}, f)
    return folder


async def start_gunctl(*args: str, **env: str) -> asyncio.subprocess.Process:
    """``gunctl ARGS`` started as a person would, its output piped."""
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "from gunctl.cli.app import main; main()",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        stdin=asyncio.subprocess.DEVNULL,
        env={**os.environ, **env},  # os.environ carries DBUS_SYSTEM_BUS_ADDRESS to the fake
    )


async def gunctl(*args: str, **env: str) -> tuple[int, str, str]:
    process = await start_gunctl(*args, **env)
    out, err = await asyncio.wait_for(process.communicate(), 30)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
