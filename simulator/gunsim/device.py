"""One simulated massage gun: physics, firmware, the person holding it, and its radio side.

``SimDevice`` is powered on with ``start()`` (or ``async with``) and off with
``aclose()``. While on, one task runs the firmware's loop on the clock it was
given: it advances the physics, checks the firmware's timers and, for streaming
specs, sends a status frame every telemetry period while a link is open. Host
writes reach the firmware through ``receive``; links attach with ``attach``.

Time is only ever read from the ``Clock``, so under ``looptime`` a ten-minute
run passes in a fraction of a second, and under ``Clock(scale=...)`` a demo runs
faster than real time. Randomness only comes from ``random.Random`` seeded from
``seed``: the same seed, spec and script give the same bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections import deque
from dataclasses import dataclass
from types import TracebackType
from typing import Literal, Protocol

from gunctl.clock import Clock
from gunctl.heads import Head
from gunctl.specs.codec import encode_battery_level
from gunctl.specs.models import DeviceSpec
from gunctl.weak import weak_method
from gunsim.faults import Faults
from gunsim.firmware import LOG_LIMIT, CommandRecord, Firmware, FirmwareEvent, RejectedFrame
from gunsim.params import PhysicsParams, params_for
from gunsim.physics import Physics


class Load(Protocol):
    """What presses on the head over time (see ``gunsim.person``)."""

    def force_at(self, t: float) -> float:
        """Newtons at ``t`` seconds after the device was switched on."""
        ...

    def next_change(self, t: float) -> float | None:
        """When the force next changes after ``t``, or None if it never does."""
        ...


class DeviceLink(Protocol):
    """The device's view of the link attached to it (``gunctl.links.sim.SimLink``)."""

    def deliver(self, data: bytes) -> None:
        """A notification on the telemetry characteristic reaches the host."""
        ...

    def lost(self, reason: str) -> None:
        """The device side ended the link; ``reason`` is what the host is told."""
        ...


class LinkRefused(Exception):
    """The device did not accept a connection (off, busy, or a scripted refusal)."""


@dataclass(frozen=True)
class DeviceState:
    """A snapshot of the truth, for tests and the CLI; the host never sees this."""

    at: float  # clock seconds
    running: bool  # the firmware has the motor on
    setpoint_ppm: float  # what the firmware was asked for
    level: int  # discrete devices: the level running, 0 stopped
    drive_ppm: float  # what the motor driver applies (differs from setpoint when stuck)
    speed_ppm: float  # the true motor speed
    current_a: float
    force_n: float
    temperature_c: float
    battery_pct: float
    head: Head | Literal["none"]
    faults: frozenset[str]  # every fault the firmware holds, reportable or not
    stalled: bool
    connected: bool


class SimDevice:
    def __init__(
        self,
        spec: DeviceSpec,
        *,
        clock: Clock,
        seed: int = 0,
        params: PhysicsParams | None = None,
        person: Load | None = None,
        address: str | None = None,
        head: Head | Literal["none"] = Head.BALL,
        log_limit: int | None = LOG_LIMIT,
    ) -> None:
        self.spec = spec
        self.clock = clock
        self.seed = seed
        self.params = params or params_for(spec.name)
        self.person = person
        self.address = address or f"sim-{spec.name}-{seed}"
        self.rng = random.Random(f"gunsim/{seed}")
        self.physics = Physics(spec, self.params, head=head)
        timeout = spec.capabilities.keepalive.timeout_s
        self.firmware = Firmware(
            spec,
            self.physics,
            self.params.firmware,
            self.params.thermal,
            weak_method(self._emit),  # the device owns its firmware: no cycle back to it
            # a demo faster than real time must not trip on the host's real-time jitter
            watchdog_s=None if timeout is None else clock.real_floor(timeout),
            log_limit=log_limit,
        )
        self.faults = Faults(self)
        self._link: DeviceLink | None = None
        self._task: asyncio.Task[None] | None = None
        self._inflight: deque[tuple[float, bytes]] = deque()  # delayed notifications
        self._courier: asyncio.Task[None] | None = None
        # every link that ended, and how: requested, timeout (host side), lost, remote (device side)
        self.link_endings: deque[tuple[float, str]] = deque(maxlen=log_limit)
        self._origin = 0.0  # clock time when switched on
        self._t = 0.0  # clock time the physics has reached
        # the device's own loop runs at least this often: one status frame, or one firmware tick
        self._period = (
            spec.capabilities.telemetry.period_s
            if self.firmware.streams
            else self.params.firmware.tick_s
        )

    # -- power ---------------------------------------------------------------

    @property
    def powered(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Switch the device on; safe to call when it is on."""
        if self.powered:
            return
        self._origin = self._t = self.clock.now()
        self._task = asyncio.create_task(self._run(), name=f"gunsim {self.address}")

    async def aclose(self) -> None:
        """Switch off: the link drops and the firmware loop ends."""
        if self._link is not None:
            self._end_link("lost")
        await self.faults.aclose()
        for task in (self._courier, self._task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._courier = self._task = None

    async def __aenter__(self) -> SimDevice:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- what tests read -----------------------------------------------------

    @property
    def state(self) -> DeviceState:
        now = self.clock.now()
        self._advance(now)
        physics, firmware = self.physics, self.firmware
        return DeviceState(
            at=now,
            running=firmware.running,
            setpoint_ppm=firmware.setpoint_ppm,
            level=firmware.level,
            drive_ppm=physics.drive_ppm,
            speed_ppm=physics.speed_ppm,
            current_a=physics.current_a,
            force_n=physics.force_n,
            temperature_c=physics.temperature_c,
            battery_pct=physics.battery_pct,
            head=physics.head,
            faults=frozenset(firmware.faults),
            stalled=physics.stalled,
            connected=self._link is not None,
        )

    @property
    def commands(self) -> list[CommandRecord]:
        """The host commands the firmware decoded (the latest ``log_limit``), with arrival times."""
        return self.firmware.commands

    @property
    def rejected(self) -> deque[RejectedFrame]:
        """The host frames the firmware could not decode and so ignored (the latest ones)."""
        return self.firmware.rejected

    @property
    def events(self) -> deque[FirmwareEvent]:
        """The stops the firmware made on its own (watchdog, auto-off, ...), the latest ones."""
        return self.firmware.events

    @property
    def origin(self) -> float:
        """Clock time when the device was switched on; scripts count from here."""
        return self._origin

    @property
    def elapsed(self) -> float:
        """Seconds since the device was switched on."""
        return self.clock.now() - self._origin

    def fit_head(self, head: Head | Literal["none"]) -> None:
        self.physics.head = head

    # -- the radio side, used by the link ------------------------------------

    @property
    def connected(self) -> bool:
        return self._link is not None

    def attach(self, link: DeviceLink) -> None:
        """Accept a connection; raises LinkRefused."""
        if not self.powered:
            raise LinkRefused(f"{self.address} is switched off")
        if self.faults.refuse_connection():
            raise LinkRefused(f"{self.address} refused the connection")
        if self._link is not None and self._link is not link:
            raise LinkRefused(f"{self.address} already has a connection")
        self._link = link

    def detach(self, link: DeviceLink, reason: str = "requested") -> None:
        """The link ended on the host's side, and the device knows it.

        ``reason`` says how the device learnt it: ``requested`` when the host
        closed the link on purpose, ``timeout`` when the device stopped hearing
        the host (the BLE supervision timeout after the radio link broke).
        Either way the firmware stops the motor.
        """
        if self._link is link:
            self._link = None
            self._inflight.clear()
            self._link_gone(reason)

    def receive(self, data: bytes) -> None:
        """A frame written to the command characteristic."""
        if self.faults.lose_write():
            return
        now = self.clock.now()
        self._advance(now)
        self.firmware.receive(bytes(data), now)
        self.physics.step(0.0, self.physics.force_n)
        self.firmware.tick(now)

    def ack_delay_s(self) -> float:
        """How long the acknowledgement of a write with response takes to come back."""
        return self.faults.ack_delay_s(self.clock.now())

    def read_battery(self) -> bytes:
        """The Battery Level characteristic; raises LookupError if the spec has none."""
        if self.spec.gatt.battery is None:
            raise LookupError(f"{self.spec.name} has no Battery Service")
        self._advance(self.clock.now())
        return encode_battery_level(self.physics.battery_pct)

    def drop_link(self, *, abrupt: bool = True) -> None:
        """The device side ends the link: abruptly (``lost``) or cleanly (``remote``)."""
        if self._link is None:
            return
        if abrupt:
            self._inflight.clear()
        else:
            while self._inflight:
                self._link.deliver(self._inflight.popleft()[1])
        self._end_link("lost" if abrupt else "remote")

    def _end_link(self, reason: str) -> None:
        link, self._link = self._link, None
        self._inflight.clear()
        if link is not None:
            link.lost(reason)
            self._link_gone(reason)

    def _link_gone(self, reason: str) -> None:
        now = self.clock.now()
        self._advance(now)
        self.link_endings.append((now, reason))
        self.firmware.link_lost(now)

    def _emit(self, data: bytes) -> None:
        """One notification, through whatever the link faults make of it."""
        if self._link is None:
            return
        now = self.clock.now()
        for delay, frame in self.faults.outgoing(data, now):
            if delay <= 0 and not self._inflight:
                self._link.deliver(frame)
                continue
            due = now + delay
            if self._inflight:
                due = max(due, self._inflight[-1][0])  # never overtake an earlier frame
            self._inflight.append((due, frame))
            if self._courier is None or self._courier.done():
                self._courier = asyncio.create_task(self._carry())

    async def _carry(self) -> None:
        while self._inflight:
            due, frame = self._inflight[0]
            await self.clock.sleep_until(due)
            if self._inflight and self._inflight[0][1] is frame:
                self._inflight.popleft()
                if self._link is not None:
                    self._link.deliver(frame)

    # -- time ----------------------------------------------------------------

    def _force_at(self, t: float) -> float:
        return 0.0 if self.person is None else self.person.force_at(t - self._origin)

    def sync(self, now: float) -> None:
        """Bring the physics up to ``now`` (the state, the firmware and faults call this)."""
        self._advance(now)

    def _advance(self, now: float) -> None:
        """Bring the physics up to ``now`` in steps that end where the load changes.

        Every way in (a frame written, the device's own loop, a state read)
        comes through here first, so a pause of the host that this device
        shares, multiplied by a time scale, is seen before any firmware timer:
        the timers stand still through it, as a real gun's would through that
        much real time.
        """
        self.firmware.hold_timers(self.clock.host_pause(now - self._t - self._period))
        max_step = self.params.max_step_s
        while self._t < now:
            # short steps while the motor's speed changes; once it has settled, one step
            # as long as it stays exact, so a long gap (a host pause times a time scale, a
            # test's clock jumping) costs a few steps, not one per max_step of it
            force = self._force_at(self._t)
            end = min(now, self._t + max(max_step, self.physics.steady_s(force)))
            if self.person is not None:
                change = self.person.next_change(self._t - self._origin)
                if change is not None and self._origin + change > self._t:
                    end = min(end, self._origin + change)
            self.physics.step(end - self._t, force)
            self._t = end

    async def _run(self) -> None:
        period = self._period
        next_tick = self._origin + period
        while True:
            deadline = self.firmware.next_deadline()
            wake = next_tick if deadline is None else min(next_tick, deadline)
            await self.clock.sleep_until(wake)
            now = max(self.clock.now(), wake)
            self._advance(now)
            self.firmware.tick(now)
            if now >= next_tick:
                if self.firmware.streams and self._link is not None:
                    self._emit(self.firmware.status_frame())
                next_tick += period
