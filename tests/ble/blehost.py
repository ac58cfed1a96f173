"""Test support for the bleak tests: the fake's guns, and a host that drives a BleakLink."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gunctl.clock import Clock
from gunctl.links.base import Endpoint, Link, Notification
from gunctl.specs.codec import Codec, DecodeError
from gunctl.specs.messages import (
    Command,
    Keepalive,
    Report,
    SetLevel,
    SetSpeed,
    Status,
    StatusRequest,
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
