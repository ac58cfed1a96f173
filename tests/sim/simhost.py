"""A small host for simulator tests: a SimLink, the spec's codec, and keepalives."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Any

import pytest

from gunctl.clock import Clock
from gunctl.links.base import Endpoint, Notification
from gunctl.links.sim import SimLink
from gunctl.specs.codec import Codec
from gunctl.specs.loader import load_specs
from gunctl.specs.messages import (
    Command,
    Keepalive,
    SetLevel,
    SetSpeed,
    Status,
    StatusRequest,
    Stop,
)
from gunctl.specs.models import DeviceSpec, KeepaliveStrategy, TelemetryMode
from gunsim import SimDevice

SPECS = load_specs()


def spec_params() -> list[Any]:
    return [pytest.param(spec, id=name) for name, spec in SPECS.items()]


class Host:
    """What a controller does, minus the control: write commands, keep alive, listen."""

    def __init__(self, device: SimDevice) -> None:
        self.device = device
        self.spec: DeviceSpec = device.spec
        self.codec = Codec(device.spec)
        self.link = SimLink(device)
        self.clock: Clock = device.clock
        self.notes: list[Notification] = []
        self.last: Command = Stop()
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> None:
        await self.link.connect()
        self._tasks.append(asyncio.create_task(self._listen()))

    async def _listen(self) -> None:
        async for note in self.link.notifications():
            self.notes.append(note)

    async def send(self, command: Command) -> None:
        self.last = command
        data = self.codec.encode_command(command)
        await self.link.write(
            Endpoint.COMMAND, data, with_response=self.codec.with_response(command)
        )

    async def run_at(self, ppm: int) -> None:
        """Ask for a speed (continuous) or the level with that ppm (discrete)."""
        levels = self.spec.capabilities.levels_ppm
        if levels is None:
            await self.send(SetSpeed(ppm=ppm))
        else:
            await self.send(SetLevel(level=levels.index(ppm) + 1))

    def start_keepalive(self) -> None:
        self._tasks.append(asyncio.create_task(self._keepalive()))

    def stop_keepalive(self) -> None:
        for task in self._tasks[1:]:
            task.cancel()
        del self._tasks[1:]

    async def _keepalive(self) -> None:
        keepalive = self.spec.capabilities.keepalive
        if keepalive.strategy is KeepaliveStrategy.NONE or keepalive.period_s is None:
            return
        while True:
            await self.clock.sleep(keepalive.period_s)
            if not self.link.connected:
                return
            if keepalive.strategy is KeepaliveStrategy.FIXED:
                await self.send(Keepalive())
            else:
                await self.send(self.last)

    @property
    def polls(self) -> bool:
        return self.spec.capabilities.telemetry.mode is TelemetryMode.POLL

    async def tick(self) -> None:
        """One telemetry period: polls ask for status, streams just wait."""
        if self.polls and self.link.connected:
            await self.send(StatusRequest())
        await self.clock.sleep(self.spec.capabilities.telemetry.period_s)

    async def wait_for(self, check: Callable[[Status], bool], *, within_s: float) -> Status:
        """The first status from now on that passes ``check``; fails after ``within_s``."""
        deadline = self.clock.now() + within_s
        seen = len(self.notes)
        while self.clock.now() < deadline:
            await self.tick()
            for note in self.notes[seen:]:
                report = self.codec.decode_report(note.data)
                if isinstance(report, Status) and check(report):
                    return report
            seen = len(self.notes)
        raise AssertionError(f"no such status within {within_s} s")

    def statuses(self, since: float = 0.0) -> list[Status]:
        out = []
        for note in self.notes:
            if note.received_at >= since:
                report = self.codec.decode_report(note.data)
                if isinstance(report, Status):
                    out.append(report)
        return out

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.link.disconnect()
