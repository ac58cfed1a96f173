"""The firmware: host frames in, motor drive and status frames out, as the spec says.

Everything protocol-specific comes from the firmware spec through the shared
``Codec`` (the simulator decodes commands and encodes reports, the mirror image
of the host). The firmware has no clock: the device calls ``receive`` with each
written frame and ``tick`` from its loop, both with the current time, and asks
``next_deadline`` when it must be called again at the latest.

Behaviour, one rule each:

- a frame that fails to decode (bad checksum, unknown opcode, a set_speed above
  ``firmware_max_ppm``, a level above the top one) is ignored and counted in
  ``rejected``; it is never obeyed and never feeds the watchdog;
- watchdog (specs whose keepalive strategy is not ``none``): while the motor
  runs, the firmware stops it once ``timeout_s`` passes with no feed. With the
  ``fixed`` strategy only the keepalive command feeds it (starting the motor
  gives one period of grace); with ``repeat_last`` any valid frame feeds it. A
  trip raises the ``watchdog`` flag where the spec has one;
- auto-off: ``auto_off_s`` after the motor started, the firmware stops it;
- thermal cutoff: at ``temperature_limit_c`` the firmware stops the motor and
  raises ``overtemp``; until the motor has cooled by the hysteresis the flag
  stays and start commands are refused;
- stall: ``stall`` is raised while the rotor is stalled; a stall lasting
  ``stall_cutoff_s`` makes the firmware stop the motor;
- ``low_battery`` below the low mark; an empty battery browns the motor out;
- ``motor``: the motor turns while the firmware has it stopped (a stuck driver);
- the ``watchdog`` and ``stall`` flags stay raised until the next start command;
- link loss (either side closing the link) stops the motor and opens the
  battery switch to the driver, which stops even a stuck driver;
- the logs of host frames, rejected frames and events keep the latest
  ``LOG_LIMIT`` entries each, so a simulator that runs for hours holds flat memory;
- telemetry: streaming specs get a status frame every telemetry period while a
  link is open; a ``status_request`` gets one at once; ``version_request`` gets
  the version report where the spec has one.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from gunctl.specs.codec import Codec, DecodeError
from gunctl.specs.messages import (
    Command,
    Keepalive,
    SetLevel,
    SetSpeed,
    Status,
    StatusRequest,
    Stop,
    Version,
    VersionRequest,
)
from gunctl.specs.models import DeviceSpec, KeepaliveStrategy, ReportKind, TelemetryMode
from gunsim.params import FirmwareParams, ThermalParams
from gunsim.physics import Physics

LOG_LIMIT = 1024  # entries kept in each of the firmware's logs (minutes of keepalives)


@dataclass(frozen=True)
class CommandRecord:
    at: float  # clock seconds when the frame arrived
    command: Command


@dataclass(frozen=True)
class RejectedFrame:
    at: float
    data: bytes
    reason: str  # the codec's DecodeFailure value


@dataclass(frozen=True)
class FirmwareEvent:
    at: float
    kind: str  # watchdog, auto_off, thermal_cutoff, stall_cutoff, brownout, link_lost, refused
    detail: str = ""


def spec_fault_flags(spec: DeviceSpec) -> frozenset[str]:
    """The fault names the spec's status report can carry."""
    for f in spec.reports[ReportKind.STATUS].fields:
        if f.name == "faults" and f.flags is not None and f.documented:
            return frozenset(f.flags.values())
    return frozenset()


@dataclass
class Firmware:
    spec: DeviceSpec
    physics: Physics
    params: FirmwareParams
    thermal: ThermalParams
    notify: Callable[[bytes], None]  # sends one frame on the telemetry characteristic
    watchdog_s: float | None = None  # the spec's keepalive timeout unless given
    running: bool = False
    setpoint_ppm: float = 0.0
    level: int = 0  # discrete devices: 1..n while running, 0 stopped
    faults: set[str] = field(default_factory=set)
    seq: int = 0
    # the most recent host frames, rejected frames and events: a gun that runs for
    # hours keeps flat memory; None keeps all (tests that read a whole session)
    log_limit: int | None = LOG_LIMIT
    # the host frames as they came, (arrival, bytes): tuples of plain values, which the
    # garbage collector stops tracking, where decoded commands were three tracked objects
    # each that every full collection walked (64 guns' logs: 41 ms of CPU after two minutes)
    _frames: deque[tuple[float, bytes]] = field(init=False)
    rejected: deque[RejectedFrame] = field(init=False)
    events: deque[FirmwareEvent] = field(init=False)
    _last_feed: float = 0.0
    _running_since: float = 0.0
    _stall_since: float | None = None

    def __post_init__(self) -> None:
        self._frames = deque(maxlen=self.log_limit)
        self.rejected = deque(maxlen=self.log_limit)
        self.events = deque(maxlen=self.log_limit)
        self.codec = Codec(self.spec)
        self.supported_flags = spec_fault_flags(self.spec)
        keepalive = self.spec.capabilities.keepalive
        if self.watchdog_s is None and keepalive.strategy is not KeepaliveStrategy.NONE:
            self.watchdog_s = keepalive.timeout_s

    @property
    def commands(self) -> list[CommandRecord]:
        """The host commands decoded (the latest ``log_limit``), with arrival times."""
        return [CommandRecord(at, self.codec.decode_command(data)) for at, data in self._frames]

    @property
    def _keepalive(self) -> KeepaliveStrategy:
        return self.spec.capabilities.keepalive.strategy

    @property
    def streams(self) -> bool:
        return self.spec.capabilities.telemetry.mode is TelemetryMode.STREAM

    # -- host frames ---------------------------------------------------------

    def receive(self, data: bytes, now: float) -> None:
        try:
            command = self.codec.decode_command(data)
        except DecodeError as exc:
            self.rejected.append(RejectedFrame(now, bytes(data), exc.reason.value))
            return
        self._frames.append((now, data))
        if self._keepalive is KeepaliveStrategy.REPEAT_LAST or isinstance(command, Keepalive):
            self._last_feed = now
        if isinstance(command, SetSpeed):
            if command.ppm == 0:
                self.stop(now)
            else:
                self._start(now, command.ppm, level=0)
        elif isinstance(command, SetLevel):
            levels = self.spec.capabilities.levels_ppm
            assert levels is not None  # the codec only decodes set_level for discrete specs
            self._start(now, levels[command.level - 1], level=command.level)
        elif isinstance(command, Stop):
            self.stop(now)
        elif isinstance(command, StatusRequest):
            self.send_status()
        elif isinstance(command, VersionRequest) and ReportKind.VERSION in self.spec.reports:
            self.notify(self.codec.encode_report(Version(version=self.params.version)))

    def _start(self, now: float, ppm: float, *, level: int) -> None:
        if "overtemp" in self.faults:
            self.events.append(FirmwareEvent(now, "refused", "start while over temperature"))
            return
        if self.physics.browned_out:
            self.events.append(FirmwareEvent(now, "refused", "start with an empty battery"))
            return
        self.faults -= {"watchdog", "stall"}
        if not self.running:
            self._running_since = now
            self._last_feed = now
        self.running = True
        self.setpoint_ppm = ppm
        self.level = level
        self.physics.set_drive(ppm)

    def stop(self, now: float, event: str | None = None, detail: str = "") -> None:
        if event is not None:
            self.events.append(FirmwareEvent(now, event, detail))
        self.running = False
        self.setpoint_ppm = 0.0
        self.level = 0
        self._stall_since = None
        self.physics.set_drive(0)

    def hold_timers(self, seconds: float) -> None:
        """Move the watchdog, auto-off and stall timers on by ``seconds`` that did not count."""
        self._last_feed += seconds
        self._running_since += seconds
        if self._stall_since is not None:
            self._stall_since += seconds

    def link_lost(self, now: float) -> None:
        self.stop(now, "link_lost")
        self.physics.cut_power()

    # -- the firmware's own loop ---------------------------------------------

    def next_deadline(self) -> float | None:
        """The next time a timer may fire, if the motor runs."""
        if not self.running:
            return None
        deadlines: list[float] = []
        if self.watchdog_s is not None:
            deadlines.append(self._last_feed + self.watchdog_s)
        if self.spec.capabilities.auto_off_s is not None:
            deadlines.append(self._running_since + self.spec.capabilities.auto_off_s)
        if self._stall_since is not None:
            deadlines.append(self._stall_since + self.params.stall_cutoff_s)
        return min(deadlines, default=None)

    def tick(self, now: float) -> None:
        """Check every timer and sensor against the physics as it is at ``now``."""
        caps = self.spec.capabilities
        physics = self.physics
        if self.running:
            if self.watchdog_s is not None and now >= self._last_feed + self.watchdog_s:
                self.faults.add("watchdog")
                self.stop(now, "watchdog", f"no keepalive for {self.watchdog_s:g} s")
            elif caps.auto_off_s is not None and now >= self._running_since + caps.auto_off_s:
                self.stop(now, "auto_off", f"running for {caps.auto_off_s} s")
        limit = caps.temperature_limit_c
        if limit is not None:
            if physics.temperature_c >= limit and "overtemp" not in self.faults:
                self.faults.add("overtemp")
                if self.running:
                    self.stop(now, "thermal_cutoff", f"{physics.temperature_c:.1f} C")
                physics.set_drive(0)
            elif physics.temperature_c < limit - self.thermal.hysteresis_c:
                self.faults.discard("overtemp")
        if physics.stalled:
            self.faults.add("stall")
            if self._stall_since is None:
                self._stall_since = now
            elif self.running and now >= self._stall_since + self.params.stall_cutoff_s:
                self.stop(now, "stall_cutoff", f"stalled for {self.params.stall_cutoff_s} s")
        else:
            self._stall_since = None
        if physics.battery_pct < physics.params.battery.low_pct:
            self.faults.add("low_battery")
        else:
            self.faults.discard("low_battery")
        if physics.browned_out and self.running:
            self.stop(now, "brownout", "battery empty")
        if not self.running and physics.drive_ppm > 0:
            self.faults.add("motor")
        else:
            self.faults.discard("motor")

    # -- reports -------------------------------------------------------------

    def status(self) -> Status:
        physics = self.physics
        # built without validation: every value here is already of the right type; every
        # field given, since pydantic inspects a default factory's signature on each call
        return Status.model_construct(
            undocumented={},
            running=self.running,
            speed_ppm=round(physics.speed_ppm),
            level=self.level if self.spec.discrete else None,
            current_a=round(physics.current_a, 3),
            force_n=round(min(physics.force_n, 6000.0), 1),
            temperature_c=round(physics.temperature_c, 1),
            battery_pct=round(physics.battery_pct),
            head=physics.head,
            faults=frozenset(self.faults & self.supported_flags),
            seq=self.seq,
        )

    def status_frame(self) -> bytes:
        frame = self.codec.encode_report(self.status())
        self.seq = (self.seq + 1) % 0x10000
        return frame

    def send_status(self) -> None:
        self.notify(self.status_frame())
