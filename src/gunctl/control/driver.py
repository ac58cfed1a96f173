"""The driver: where a setpoint becomes bytes on a link.

This is the one place in gunctl that makes command frames, so it is where the
caps are enforced: whatever intensity it is handed, it writes no faster than
the cap it is given and the device's top speed, and the codec refuses anything
above the firmware's limit. Only the Supervisor holds a Driver.
"""

from __future__ import annotations

import asyncio

import structlog

from gunctl.links.base import Endpoint, Link
from gunctl.specs.codec import Codec, decode_battery_level
from gunctl.specs.messages import (
    Command,
    Keepalive,
    SetLevel,
    SetSpeed,
    StatusRequest,
    Stop,
    VersionRequest,
)
from gunctl.specs.models import DeviceSpec, KeepaliveStrategy
from gunctl.specs.speed import STOPPED, Setpoint, setpoint_for

log = structlog.get_logger("gunctl.driver")


class Driver:
    def __init__(self, spec: DeviceSpec, link: Link) -> None:
        self.spec = spec
        self.link = link
        self.codec = Codec(spec)
        self._gatt = asyncio.Lock()  # one GATT operation at a time
        self.setpoint: Setpoint = STOPPED  # the last setpoint written
        self._last: Command = Stop()  # what a repeat-last keepalive repeats
        self.frames_written = 0

    def clamp(self, intensity: float, cap: float) -> Setpoint:
        """The setpoint for ``intensity`` under ``cap`` (both 0..1)."""
        return setpoint_for(min(intensity, cap, 1.0), self.spec.capabilities)

    async def run_at(self, intensity: float, cap: float) -> Setpoint:
        """Write the setpoint for ``intensity``, never above ``cap``."""
        setpoint = self.clamp(intensity, cap)
        if setpoint.stopped:
            await self.stop()
            return setpoint
        command: Command = (
            SetLevel(level=setpoint.level)
            if setpoint.level is not None
            else SetSpeed(ppm=setpoint.ppm)
        )
        await self._write(command)
        self.setpoint = setpoint
        return setpoint

    async def stop(self) -> None:
        self.setpoint = STOPPED
        await self._write(Stop())

    async def keepalive(self) -> None:
        """What the spec's strategy sends; a stopped motor's keepalive is always stop."""
        strategy = self.spec.capabilities.keepalive.strategy
        if self.setpoint.stopped:
            await self._write(Stop())
        elif strategy is KeepaliveStrategy.FIXED:
            await self._write(Keepalive(), remember=False)
        elif strategy is KeepaliveStrategy.REPEAT_LAST:
            await self._write(self._last)

    async def request_status(self) -> None:
        await self._write(StatusRequest(), remember=False)

    async def request_version(self) -> None:
        if "version_request" in self.spec.commands:
            await self._write(VersionRequest(), remember=False)

    async def read_battery(self) -> float:
        async with self._gatt:
            return decode_battery_level(await self.link.read(Endpoint.BATTERY))

    async def _write(self, command: Command, *, remember: bool = True) -> None:
        frame = self.codec.encode_command(command)
        async with self._gatt:
            await self.link.write(
                Endpoint.COMMAND, frame, with_response=self.codec.with_response(command)
            )
        self.frames_written += 1
        if remember:
            self._last = command
        log.debug("frame_written", command=command.kind, frame=frame.hex())
