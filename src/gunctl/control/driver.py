"""The driver: where a setpoint becomes bytes on a link.

This is the one place in gunctl that makes command frames, so it is where the
caps are enforced: whatever intensity it is handed, it writes no faster than
the cap it is given and the device's top speed, and the codec refuses anything
above the firmware's limit. Only the Supervisor holds a Driver.

Every write is bounded: a frame the link has not acknowledged within
``ACK_WITHIN_S`` raises ``Unanswered``, so a link that hangs (a stuck
adapter, a gun that stopped answering) cannot hold up the control loop that
awaits it. A stop never queues behind another write: it goes out at once,
beside whatever is still waiting for its acknowledgement, and a setpoint still
waiting for its turn when a stop goes out is dropped rather than written after
it.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import structlog

from gunctl.links.base import Endpoint, Link, LinkError
from gunctl.specs.codec import Codec, decode_battery_level
from gunctl.specs.messages import (
    KEEPALIVE,
    STATUS_REQUEST,
    STOP,
    VALUELESS,
    VERSION_REQUEST,
    Command,
    SetLevel,
    SetSpeed,
)
from gunctl.specs.models import CommandKind, DeviceSpec, KeepaliveStrategy
from gunctl.specs.speed import STOPPED, Setpoint, setpoint_for

log = structlog.get_logger("gunctl.driver")

# Longer than BlueZ's default supervision timeout (420 ms): a real link silent this
# long is gone, and a loaded host's stalls (tens of ms) stay well inside it.
ACK_WITHIN_S = 0.5


class Unanswered(LinkError):
    """The link took a frame (or a read) but did not answer in time: it cannot be trusted."""


class Driver:
    def __init__(self, spec: DeviceSpec, link: Link, *, ack_within_s: float = ACK_WITHIN_S) -> None:
        self.spec = spec
        self.link = link
        self.ack_within_s = ack_within_s
        self.codec = Codec(spec)
        self._gatt = asyncio.Lock()  # one GATT operation at a time, stops aside
        self._stops = 0  # stops written: a setpoint queued before one is dropped
        stop = spec.commands.get(CommandKind.STOP)
        # the spec allows its stop without response, and telemetry can confirm it
        self._stop_unacknowledged = (
            stop is not None
            and stop.with_response
            and stop.response_optional
            and "running" in spec.documented_fields
        )
        self.stop_unconfirmed = False  # a stop went without response, no frame has confirmed it
        self.setpoint: Setpoint = STOPPED  # the last setpoint written
        self._clamped: tuple[float, Setpoint] = (0.0, STOPPED)  # the last clamp asked for
        self._last: Command = STOP  # what a repeat-last keepalive repeats
        # their frames never change, so they are encoded once (by kind: nothing else tells
        # one from another)
        self._frames: dict[str, bytes] = {
            c.kind: self.codec.encode_command(c) for c in VALUELESS if c.kind in spec.commands
        }
        self.frames_written = 0

    def clamp(self, intensity: float, cap: float) -> Setpoint:
        """The setpoint for ``intensity`` under ``cap`` (both 0..1).

        Asked on every tick, and in a hold with the same answer: the last one is
        kept, and worked out again only when the clamped intensity changes.
        """
        bounded = min(intensity, cap, 1.0)
        if bounded != self._clamped[0]:  # NaN never equals: always worked out (to a stop)
            self._clamped = (bounded, setpoint_for(bounded, self.spec.capabilities))
        return self._clamped[1]

    @property
    def stops(self) -> int:
        """Stops written so far: a setpoint decided before one is dropped (``run_at(after=)``)."""
        return self._stops

    async def run_at(self, intensity: float, cap: float, *, after: int | None = None) -> Setpoint:
        """Write the setpoint for ``intensity``, never above ``cap``.

        Dropped, and the setpoint in force returned, when a stop has gone out
        since ``stops`` read ``after`` (when the setpoint was decided), or
        since the call, while it waited for its turn.
        """
        setpoint = self.clamp(intensity, cap)
        if setpoint.stopped:
            await self.stop()
            return setpoint
        command: Command = (
            SetLevel(level=setpoint.level)
            if setpoint.level is not None
            else SetSpeed(ppm=setpoint.ppm)
        )
        if await self._write(command, after=after):
            self.setpoint = setpoint
            self.stop_unconfirmed = False
        return self.setpoint

    async def stop(self) -> None:
        """Write stop now, ahead of any write still waiting for its turn or its acknowledgement."""
        self.setpoint = STOPPED
        self._stops += 1
        if self._stop_unacknowledged:
            self.stop_unconfirmed = True
            await self._write(STOP, urgent=True, response=False)
        else:
            await self._write(STOP, urgent=True)

    async def keepalive(self) -> None:
        """What the spec's strategy sends; a stopped motor's keepalive is always stop."""
        strategy = self.spec.capabilities.keepalive.strategy
        if self.setpoint.stopped:
            await self._write(STOP)
        elif strategy is KeepaliveStrategy.FIXED:
            await self._write(KEEPALIVE, remember=False)
        elif strategy is KeepaliveStrategy.REPEAT_LAST:
            await self._write(self._last)

    async def request_status(self) -> None:
        await self._write(STATUS_REQUEST, remember=False)

    async def request_version(self) -> None:
        if "version_request" in self.spec.commands:
            await self._write(VERSION_REQUEST, remember=False)

    async def read_battery(self) -> float:
        async with self._bounded("battery read"), self._gatt:
            return decode_battery_level(await self.link.read(Endpoint.BATTERY))

    async def _write(
        self,
        command: Command,
        *,
        remember: bool = True,
        urgent: bool = False,
        response: bool | None = None,
        after: int | None = None,
    ) -> bool:
        """Write ``command``; False if a stop went out while it waited for its turn."""
        frame = self._frames.get(command.kind) or self.codec.encode_command(command)
        if response is None:
            response = self.codec.with_response(command)
        stops = self._stops if after is None else after
        async with self._bounded(command.kind):
            if urgent:
                await self.link.write(Endpoint.COMMAND, frame, with_response=response)
            else:
                async with self._gatt:
                    if self._stops != stops:
                        return False
                    await self.link.write(Endpoint.COMMAND, frame, with_response=response)
        self.frames_written += 1
        if remember:
            self._last = command
        log.debug("frame_written", command=command.kind, frame=frame.hex())
        return True

    def _bounded(self, what: str) -> _Bounded:
        return _Bounded(what, self.ack_within_s)


class _Bounded:
    """A write or read the device must answer within ``within`` seconds, else ``Unanswered``.

    A class rather than a generator context manager: it wraps every frame
    written, a keepalive five times a second per gun.
    """

    __slots__ = ("_timeout", "_what", "_within")

    def __init__(self, what: str, within: float) -> None:
        self._what = what
        self._within = within
        self._timeout = asyncio.timeout(within)

    async def __aenter__(self) -> None:
        await self._timeout.__aenter__()

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._timeout.__aexit__(kind, exc, tb)
        except TimeoutError:
            pass
        else:
            if not isinstance(exc, TimeoutError):
                return
        raise Unanswered(
            f"the device did not acknowledge a {self._what} within {self._within:g} s"
        ) from None
