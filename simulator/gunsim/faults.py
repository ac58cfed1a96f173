"""Fault injection: one API for everything that can go wrong, all of it scriptable.

A fault is a small pydantic model (so a script can be written in YAML or JSON
as well as in Python); ``device.faults.inject(fault)`` applies it now, and
``device.faults.schedule(at_s, fault)`` applies it at ``at_s`` seconds after
the device was switched on. ``ClearFaults`` undoes every lasting fault.

Link faults, seen by the host through the link:

- ``DropLink(abrupt=True)``: the link is lost (``wait_disconnected`` returns
  ``lost``); frames still in flight are lost with it. ``abrupt=False`` is the
  device closing the link cleanly: frames in flight arrive first, and the
  reason is ``remote``;
- ``Silence(duration_s)``: connected, but no notifications at all (stale
  telemetry; status requests go unanswered);
- ``DelayNotifications(delay_s, duration_s)``: every notification arrives
  ``delay_s`` late, order kept;
- ``ReorderNotifications(count)``: the next ``count`` pairs of notifications
  arrive swapped;
- ``CorruptFrames``, ``TruncateFrames``, ``DuplicateFrames``: the next ``count``
  notifications, or each with ``probability``, arrive with one byte flipped
  (``checksum_only``: a checksum byte), cut short by one to three bytes, or
  twice. A flipped byte never turns into a valid frame for the shipped specs:
  every one has a checksum that catches a single changed byte;
- ``RefuseConnections(count)``: each of the next ``count`` connection attempts
  is refused;
- ``SlowAcks(delay_s, duration_s)``: writes with response are acknowledged
  ``delay_s`` late (the firmware has already acted on them);
- ``LoseWrites(count)``: the next ``count`` host frames never reach the
  firmware.

Hardware faults, seen through the telemetry where the spec reports it and in
``device.state`` always:

- ``Overheat(temperature_c)``: the motor is suddenly that hot (the thermal
  model cools it from there; the firmware's cutoff reacts at its next tick);
- ``Stall(on)``: the rotor is jammed: driven, it stays still and draws its
  stall current;
- ``LowBattery(pct)``: the battery is at that level;
- ``StuckMotor(on)``: the motor driver is stuck on. Once driven, it ignores
  every lower drive the firmware asks for (stop, watchdog, auto-off, cutoffs),
  and the firmware raises its ``motor`` flag. Only the link going (either way)
  stops it: the firmware then opens the battery switch to the driver.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import weakref
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, model_validator

from gunctl.specs.models import DeviceSpec, Part, hex_to_bytes

if TYPE_CHECKING:
    from gunsim.device import SimDevice


class _Fault(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Selection(_Fault):
    """Which frames: the next ``count``, or each with ``probability`` (until cleared)."""

    count: int | None = Field(default=None, ge=1)
    probability: float | None = Field(default=None, gt=0, le=1)

    @model_validator(mode="after")
    def _one(self) -> _Selection:
        if (self.count is None) == (self.probability is None):
            raise ValueError("give exactly one of count or probability")
        return self


class DropLink(_Fault):
    kind: Literal["drop_link"] = "drop_link"
    abrupt: bool = True


class Silence(_Fault):
    kind: Literal["silence"] = "silence"
    duration_s: float | None = Field(default=None, gt=0)  # None: until cleared


class DelayNotifications(_Fault):
    kind: Literal["delay_notifications"] = "delay_notifications"
    delay_s: float = Field(gt=0)
    duration_s: float | None = Field(default=None, gt=0)


class ReorderNotifications(_Fault):
    kind: Literal["reorder_notifications"] = "reorder_notifications"
    count: int = Field(default=1, ge=1)  # pairs swapped


class CorruptFrames(_Selection):
    kind: Literal["corrupt_frames"] = "corrupt_frames"
    checksum_only: bool = False


class TruncateFrames(_Selection):
    kind: Literal["truncate_frames"] = "truncate_frames"


class DuplicateFrames(_Selection):
    kind: Literal["duplicate_frames"] = "duplicate_frames"


class RefuseConnections(_Fault):
    kind: Literal["refuse_connections"] = "refuse_connections"
    count: int = Field(default=1, ge=1)


class LoseWrites(_Fault):
    """The next ``count`` host frames never reach the firmware (a frame lost on the air)."""

    kind: Literal["lose_writes"] = "lose_writes"
    count: int = Field(default=1, ge=1)


class SlowAcks(_Fault):
    kind: Literal["slow_acks"] = "slow_acks"
    delay_s: float = Field(gt=0)
    duration_s: float | None = Field(default=None, gt=0)


class Overheat(_Fault):
    kind: Literal["overheat"] = "overheat"
    temperature_c: float


class Stall(_Fault):
    kind: Literal["stall"] = "stall"
    on: bool = True


class LowBattery(_Fault):
    kind: Literal["low_battery"] = "low_battery"
    pct: float = Field(ge=0, le=100)


class StuckMotor(_Fault):
    kind: Literal["stuck_motor"] = "stuck_motor"
    on: bool = True


class ClearFaults(_Fault):
    kind: Literal["clear"] = "clear"


Fault = Annotated[
    DropLink
    | Silence
    | DelayNotifications
    | ReorderNotifications
    | CorruptFrames
    | TruncateFrames
    | DuplicateFrames
    | RefuseConnections
    | SlowAcks
    | LoseWrites
    | Overheat
    | Stall
    | LowBattery
    | StuckMotor
    | ClearFaults,
    Field(discriminator="kind"),
]
FAULT_ADAPTER: TypeAdapter[Fault] = TypeAdapter(Fault)


def checksum_span(spec: DeviceSpec, total: int) -> range:
    """Where the checksum sits in a frame of ``total`` bytes (empty if there is none)."""
    frame = spec.frame
    if frame.checksum is None:
        return range(0)
    sizes = {
        Part.HEADER: len(hex_to_bytes(frame.device_header)),
        Part.CHECKSUM: frame.checksum.kind.size,
        Part.OPCODE: 1,
        Part.LENGTH: 1,
    }
    split = frame.parts.index(Part.PAYLOAD)
    at = frame.parts.index(Part.CHECKSUM)
    if at < split:
        start = sum(sizes[p] for p in frame.parts[:at])
    else:
        start = total - sum(sizes[p] for p in frame.parts[at:])
    return range(start, start + sizes[Part.CHECKSUM])


class _Window:
    """A fault that lasts until a clock time (None: until cleared)."""

    def __init__(self) -> None:
        self.active = False
        self.until: float | None = None
        self.value = 0.0

    def set(self, now: float, duration_s: float | None, value: float = 0.0) -> None:
        self.active, self.value = True, value
        self.until = None if duration_s is None else now + duration_s

    def on(self, now: float) -> bool:
        if self.active and self.until is not None and now >= self.until:
            self.active = False
        return self.active


class _Counter:
    """A frame fault for the next N frames, or for each frame with a probability."""

    def __init__(self) -> None:
        self.left = 0
        self.probability = 0.0

    def set(self, selection: _Selection) -> None:
        self.left = selection.count or 0
        self.probability = selection.probability or 0.0

    def hit(self, rng: random.Random) -> bool:
        if self.left > 0:
            self.left -= 1
            return True
        return self.probability > 0 and rng.random() < self.probability


class Faults:
    """The faults of one device; reach it as ``device.faults``."""

    def __init__(self, device: SimDevice) -> None:
        # a weak proxy: the device owns its faults, so no cycle keeps a closed device alive
        self.device: SimDevice = weakref.proxy(device)
        self.rng = random.Random(f"gunsim-faults/{device.seed}")
        self.injected: list[tuple[float, Fault]] = []  # what was applied, when
        self._tasks: set[asyncio.Task[None]] = set()
        self._reset()

    def _reset(self) -> None:
        self.refusals = 0
        self.silence = _Window()
        self.delay = _Window()
        self.slow_acks = _Window()
        self.lost_writes = 0  # host frames still to lose
        self.reorder_pairs = 0
        self._held: bytes | None = None
        self.corrupt = _Counter()
        self.checksum_only = False
        self.truncate = _Counter()
        self.duplicate = _Counter()

    # -- the API -------------------------------------------------------------

    def inject(self, fault: Fault | dict[str, object]) -> None:
        """Apply a fault now (a model, or its dict form such as ``{"kind": "silence"}``)."""
        if isinstance(fault, dict):
            fault = FAULT_ADAPTER.validate_python(fault)
        device, physics = self.device, self.device.physics
        now = device.clock.now()
        device.sync(now)
        self.injected.append((now, fault))
        if isinstance(fault, DropLink):
            device.drop_link(abrupt=fault.abrupt)
        elif isinstance(fault, Silence):
            self.silence.set(now, fault.duration_s)
        elif isinstance(fault, DelayNotifications):
            self.delay.set(now, fault.duration_s, fault.delay_s)
        elif isinstance(fault, ReorderNotifications):
            self.reorder_pairs = fault.count
        elif isinstance(fault, CorruptFrames):
            self.corrupt.set(fault)
            self.checksum_only = fault.checksum_only
        elif isinstance(fault, TruncateFrames):
            self.truncate.set(fault)
        elif isinstance(fault, DuplicateFrames):
            self.duplicate.set(fault)
        elif isinstance(fault, RefuseConnections):
            self.refusals = fault.count
        elif isinstance(fault, SlowAcks):
            self.slow_acks.set(now, fault.duration_s, fault.delay_s)
        elif isinstance(fault, LoseWrites):
            self.lost_writes = fault.count
        elif isinstance(fault, Overheat):
            physics.temperature_c = fault.temperature_c
        elif isinstance(fault, Stall):
            physics.jammed = fault.on
        elif isinstance(fault, LowBattery):
            physics.battery_pct = fault.pct
        elif isinstance(fault, StuckMotor):
            physics.driver_stuck = fault.on
        elif isinstance(fault, ClearFaults):
            self._reset()
            physics.jammed = physics.driver_stuck = False
        device.firmware.tick(now)

    def schedule(self, at_s: float, fault: Fault | dict[str, object]) -> None:
        """Apply a fault at ``at_s`` seconds after the device was switched on."""
        if isinstance(fault, dict):
            fault = FAULT_ADAPTER.validate_python(fault)
        task = asyncio.create_task(self._later(at_s, fault))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def script(self, steps: list[tuple[float, Fault | dict[str, object]]]) -> None:
        """Schedule several faults: a list of (seconds after switch-on, fault)."""
        for at_s, fault in steps:
            self.schedule(at_s, fault)

    async def _later(self, at_s: float, fault: Fault) -> None:
        await self.device.clock.sleep_until(self.device.origin + at_s)
        self.inject(fault)

    async def aclose(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # -- what the device and the link ask --------------------------------------

    def refuse_connection(self) -> bool:
        if self.refusals > 0:
            self.refusals -= 1
            return True
        return False

    def lose_write(self) -> bool:
        """Whether this host frame is lost before the firmware sees it."""
        if self.lost_writes == 0:
            return False
        self.lost_writes -= 1
        return True

    def ack_delay_s(self, now: float) -> float:
        return self.slow_acks.value if self.slow_acks.on(now) else 0.0

    def outgoing(self, data: bytes, now: float) -> list[tuple[float, bytes]]:
        """What becomes of one notification: (delay, bytes) for each that goes out."""
        if self.silence.on(now):
            return []
        frames = [data]
        if self.corrupt.hit(self.rng):
            frames = [self._corrupted(data)]
        if self.truncate.hit(self.rng):
            cut = min(len(frames[0]) - 1, self.rng.randint(1, 3))
            frames = [frames[0][:-cut]]
        if self.duplicate.hit(self.rng):
            frames = frames * 2
        if self.reorder_pairs > 0:
            if self._held is None:
                self._held, frames = frames[0], frames[1:]
                if not frames:
                    return []
            else:
                frames, self._held = [*frames, self._held], None
                self.reorder_pairs -= 1
        delay = self.delay.value if self.delay.on(now) else 0.0
        return [(delay, frame) for frame in frames]

    def _corrupted(self, data: bytes) -> bytes:
        span = checksum_span(self.device.spec, len(data))
        header = len(hex_to_bytes(self.device.spec.frame.device_header))
        if self.checksum_only and span:
            at = self.rng.choice(list(span))
        else:
            at = self.rng.choice([i for i in range(header, len(data)) if i not in span] or [0])
        out = bytearray(data)
        out[at] ^= 1 << self.rng.randrange(8)
        return bytes(out)
