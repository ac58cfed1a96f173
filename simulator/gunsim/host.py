"""A bare host: a SimLink, the spec's codec, keepalives and polls, and no safety rules."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from gunctl.clock import Clock
from gunctl.links.base import Endpoint, Notification
from gunctl.links.sim import SimLink
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
from gunsim.device import SimDevice


@dataclass(frozen=True)
class Written:
    """A frame the host wrote, and when."""

    at: float  # clock seconds
    data: bytes
    with_response: bool


class Host:
    """What a controller does, minus the control: write commands, keep alive, listen.

    It has none of the Supervisor's rules, so a fault shows its raw effect: the
    simulator's own tests and ``gunsim run`` drive devices through it.
    """

    def __init__(self, device: SimDevice) -> None:
        self.device = device
        self.spec: DeviceSpec = device.spec
        self.codec = Codec(device.spec)
        self.link = SimLink(device)
        self.clock: Clock = device.clock
        self.notes: list[Notification] = []
        self.sent: list[Written] = []  # every frame written, in order
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
        with_response = self.codec.with_response(command)
        self.sent.append(Written(self.clock.now(), data, with_response))
        await self.link.write(Endpoint.COMMAND, data, with_response=with_response)

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
                status = self._status(note)
                if status is not None and check(status):
                    return status
            seen = len(self.notes)
        raise TimeoutError(f"no such status within {within_s} s")

    def statuses(self, since: float = 0.0) -> list[Status]:
        """Every status received since ``since``; frames that do not decode are left out."""
        return [s for note in self.notes if note.received_at >= since if (s := self._status(note))]

    def latest(self) -> Status | None:
        """The newest status, decoding back from the end only as far as needed."""
        return next((s for note in reversed(self.notes) if (s := self._status(note))), None)

    @property
    def bad(self) -> int:
        """Notifications that did not decode."""
        return sum(1 for note in self.notes if self._report(note) is None)

    def _report(self, note: Notification) -> Report | None:
        try:
            return self.codec.decode_report(note.data)
        except DecodeError:
            return None

    def _status(self, note: Notification) -> Status | None:
        report = self._report(note)
        return report if isinstance(report, Status) else None

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.link.disconnect()
