"""Safety rules: each a small named unit the Supervisor evaluates.

Rules that read telemetry (``on_frame``) run as each status frame is decoded,
so a hazard stops the motor the moment the frame carrying it arrives; rules on
time (staleness, hold, session and exposure time) run on the 50 Hz tick.
A rule looks at one ``Tick`` (the latest telemetry, the step being run, the
time worked) and returns a ``Verdict`` or nothing. Every verdict names its rule
and carries the values that made it fire, so a stop can always be explained.
A rule only reads telemetry fields its device documents; for a device that
reports less (Theragun reports no temperature or force), the host-side rules
on time, speed and staleness still hold.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar, Protocol

from gunctl.datafile import DataModel
from gunctl.errors import UnknownNameError
from gunctl.profiles.plan import PlannedStep
from gunctl.specs.models import DeviceSpec


class Action(StrEnum):
    WARN = "warn"  # tell the person, change nothing
    BACK_OFF = "back_off"  # lower the intensity and keep going
    STOP = "stop"  # stop the motor and end the session
    STOP_AGAIN = "stop_again"  # a stop did not take: write it again
    DROP_LINK = "drop_link"  # it still did not take: cut the link so the firmware watchdog acts


@dataclass(frozen=True)
class Verdict:
    rule: str
    action: Action
    message: str
    values: dict[str, Any]


class Limits(DataModel):
    """Host-side limits that hold for every device, whatever its firmware does."""

    stale_after_s: float = 0.25  # telemetry older than this (or 2.5 periods, if longer) stops
    temperature_warn_c: float = 50.0
    temperature_stop_c: float = 60.0  # lowered to 5 degC under a firmware cutoff below it
    force_back_off: float = 0.8  # intensity multiplier while force is over the muscle's cap
    force_persist_s: float = 2.0  # force still over the cap after this long stops
    stall_speed_ratio: float = 0.3  # measured speed under this share of the setpoint is a stall
    stall_after_s: float = 0.5
    spin_up_s: float = 1.5  # a new setpoint gets this long before stall and stuck checks
    battery_floor_pct: float = 10.0
    hold_grace_s: float = 0.5
    session_max_s: float = 600.0  # active session time, pauses excluded
    stuck_after_s: float = 1.0  # after a stop, speed must fall below half within this
    slew_per_s: float = 0.5  # how fast the intensity may rise, per second
    head_mismatch_s: float = 0.3  # a reported head may lag a change by a frame or two


class Telemetry:
    """The latest value of every documented status field, with when it arrived."""

    def __init__(self, trusted: set[str]) -> None:
        self.trusted = trusted
        self.values: dict[str, Any] = {}
        self.updated: dict[str, float] = {}
        self.last_at: float | None = None  # time of the newest status frame

    def update(self, values: Mapping[str, Any], at: float, *, frame: bool = True) -> None:
        """Take in new values; ``frame=False`` for a value read out of band (battery).

        Only status frames count toward freshness: a battery read every half
        minute must not make a silent telemetry stream look alive.
        """
        if frame:
            self.last_at = at
        for name, value in values.items():
            if name in self.trusted and value is not None:
                self.values[name] = value
                self.updated[name] = at

    def get(self, name: str) -> Any:
        return self.values.get(name)


@dataclass(slots=True)
class Tick:
    """What the rules see at one tick: read during a check, never kept past it."""

    now: float
    spec: DeviceSpec
    limits: Limits
    telemetry: Telemetry
    watching_since: float  # when telemetry started to be required
    step: PlannedStep | None  # the step being worked, None between sessions
    holding_s: float | None  # time into the hold phase, None outside it
    motor_on: bool  # a nonzero setpoint is in force
    setpoint_ppm: int
    setpoint_since: float  # when the current nonzero setpoint was first written
    worked_s: Mapping[tuple[str, str], float]  # motor-on time per (muscle, side)
    prior_s: Callable[[str, str], float]  # exposure in the 48 hours before this session
    active_s: float  # session time, pauses excluded
    session_running: bool
    stop_written_at: float | None  # the last stop frame written after the motor ran
    speed_at_stop: float | None  # measured speed when that stop was written
    # A simulated gun only: clock time the host's loop was held up since the last
    # frame. The simulated gun was held up with it (or its frames were), so its
    # silence then is the host's, times any time scale, not a gun gone quiet.
    host_paused_s: float = 0.0


class Rule(Protocol):
    """A dataclass: its constructor arguments are settings, its ``init=False`` fields state."""

    __dataclass_fields__: ClassVar[dict[str, Any]]
    name: str
    on_frame: ClassVar[bool]  # runs on each telemetry frame rather than on the tick

    def check(self, tick: Tick) -> Verdict | None: ...


def _stop(rule: str, message: str, **values: Any) -> Verdict:
    return Verdict(rule, Action.STOP, message, values)


def telemetry_limit_s(tick: Tick) -> float:
    """How long telemetry may go unheard: the host limit, or 2.5 periods if longer."""
    return max(tick.limits.stale_after_s, 2.5 * tick.spec.capabilities.telemetry.period_s)


@dataclass
class StaleTelemetry:
    name: str = "stale_telemetry"
    on_frame: ClassVar[bool] = False

    def check(self, tick: Tick) -> Verdict | None:
        if not tick.session_running:
            return None
        limit = telemetry_limit_s(tick)
        since = (
            tick.telemetry.last_at if tick.telemetry.last_at is not None else tick.watching_since
        )
        age = tick.now - max(since, tick.watching_since) - tick.host_paused_s
        if age > limit:
            return _stop(
                self.name, f"no telemetry for {age:.2f} s", age_s=round(age, 3), limit_s=limit
            )
        return None


@dataclass
class Temperature:
    name: str = "temperature"
    on_frame: ClassVar[bool] = True
    warned: bool = field(default=False, init=False)

    def check(self, tick: Tick) -> Verdict | None:
        temperature = tick.telemetry.get("temperature_c")
        if temperature is None:
            return None
        stop_at = tick.limits.temperature_stop_c
        firmware = tick.spec.capabilities.temperature_limit_c
        if firmware is not None:
            stop_at = min(stop_at, firmware - 5)
        if temperature >= stop_at:
            return _stop(
                self.name,
                f"motor at {temperature:.1f} °C",
                temperature_c=temperature,
                limit_c=stop_at,
            )
        if temperature >= tick.limits.temperature_warn_c and not self.warned:
            self.warned = True
            return Verdict(
                self.name,
                Action.WARN,
                f"motor warming up: {temperature:.1f} °C",
                {"temperature_c": temperature, "warn_c": tick.limits.temperature_warn_c},
            )
        return None


@dataclass
class Force:
    """Pressing harder than the muscle takes: back off at once, stop if it goes on."""

    name: str = "force"
    on_frame: ClassVar[bool] = True
    over_since: float | None = field(default=None, init=False)

    def check(self, tick: Tick) -> Verdict | None:
        force = tick.telemetry.get("force_n")
        cap = tick.step.force_cap_n if tick.step is not None else None
        if force is None or cap is None or not tick.motor_on or force <= cap:
            self.over_since = None
            return None
        if self.over_since is None:
            self.over_since = tick.now
        over_for = tick.now - self.over_since
        values = {"force_n": force, "cap_n": cap, "over_for_s": round(over_for, 3)}
        if over_for >= tick.limits.force_persist_s:
            return _stop(self.name, f"pressing {force:.0f} N on a {cap:.0f} N cap", **values)
        return Verdict(
            self.name, Action.BACK_OFF, f"ease off: {force:.0f} N on a {cap:.0f} N cap", values
        )


@dataclass
class Stall:
    name: str = "stall"
    on_frame: ClassVar[bool] = True
    slow_since: float | None = field(default=None, init=False)

    def check(self, tick: Tick) -> Verdict | None:
        speed = tick.telemetry.get("speed_ppm")
        settled = tick.motor_on and tick.now - tick.setpoint_since >= tick.limits.spin_up_s
        if (
            speed is None
            or not settled
            or speed >= tick.limits.stall_speed_ratio * tick.setpoint_ppm
        ):
            self.slow_since = None
            return None
        if self.slow_since is None:
            self.slow_since = tick.now
        if tick.now - self.slow_since >= tick.limits.stall_after_s:
            return _stop(
                self.name,
                f"motor stalled at {speed:.0f} ppm of {tick.setpoint_ppm}",
                speed_ppm=speed,
                setpoint_ppm=tick.setpoint_ppm,
            )
        return None


@dataclass
class Battery:
    name: str = "battery"
    on_frame: ClassVar[bool] = True

    def check(self, tick: Tick) -> Verdict | None:
        battery = tick.telemetry.get("battery_pct")
        if battery is None or not tick.session_running or battery >= tick.limits.battery_floor_pct:
            return None
        return _stop(
            self.name,
            f"battery at {battery:.0f}%",
            battery_pct=battery,
            floor_pct=tick.limits.battery_floor_pct,
        )


@dataclass
class DeviceFaults:
    """A fault the device reports now stops the motor; one latched from before does not.

    The spec names the flags the firmware keeps raised after their event and
    what clears them (a watchdog trip stays until the next start). Such a flag
    seen with the motor stopped tells of an earlier event (a link lost last
    session): it is reported once and left for the next start to clear, rather
    than refusing every session for ever. Raised while the motor runs, or
    still raised once a start has had time to clear it, it is a fault now.
    """

    name: str = "device_fault"
    on_frame: ClassVar[bool] = True
    earlier: set[str] = field(
        default_factory=set, init=False
    )  # latched flags raised before the last start
    reported: set[str] = field(default_factory=set, init=False)

    def check(self, tick: Tick) -> Verdict | None:
        faults = set(tick.telemetry.get("faults") or ())
        if not faults and not self.earlier:  # nothing raised now or before: nothing to say
            return None
        latched = faults & set(tick.spec.latched_faults)
        if tick.motor_on:
            self.earlier &= faults  # a flag seen cleared is no longer from before
            clearing = tick.now - tick.setpoint_since < telemetry_limit_s(tick)
            present = faults - self.earlier if clearing else faults
        else:
            self.earlier |= latched
            present = faults - latched
        if present:
            listed = sorted(present)
            return _stop(self.name, f"the device reports {', '.join(listed)}", faults=listed)
        news = sorted(self.earlier - self.reported)
        if news and tick.session_running:  # said to the person whose session it concerns
            self.reported |= self.earlier
            clears = ", ".join(f"{f} ({tick.spec.latched_faults[f].value})" for f in news)
            return Verdict(
                self.name,
                Action.WARN,
                f"the device still shows {', '.join(news)} from an earlier event; cleared by "
                "the next start",
                {"latched": news, "clears": clears},
            )
        return None


@dataclass
class HoldTime:
    name: str = "hold_time"
    on_frame: ClassVar[bool] = False

    def check(self, tick: Tick) -> Verdict | None:
        if tick.step is None or tick.holding_s is None:
            return None
        limit = tick.step.hold_max_s + tick.limits.hold_grace_s
        if tick.holding_s > limit:
            return _stop(
                self.name,
                f"held {tick.holding_s:.1f} s on one point of {tick.step.muscle}",
                hold_s=round(tick.holding_s, 2),
                limit_s=tick.step.hold_max_s,
            )
        return None


@dataclass
class MuscleSessionTime:
    name: str = "muscle_session_time"
    on_frame: ClassVar[bool] = False

    def check(self, tick: Tick) -> Verdict | None:
        step = tick.step
        if step is None:
            return None
        worked = tick.worked_s.get((step.muscle, step.side), 0.0)
        if worked > step.session_s_max:
            return _stop(
                self.name,
                f"{step.muscle} ({step.side}) worked {worked:.0f} s this session",
                muscle=step.muscle,
                side=step.side,
                worked_s=round(worked, 2),
                limit_s=step.session_s_max,
            )
        return None


@dataclass
class SessionTime:
    name: str = "session_time"
    on_frame: ClassVar[bool] = False

    def check(self, tick: Tick) -> Verdict | None:
        if tick.session_running and tick.active_s > tick.limits.session_max_s:
            return _stop(
                self.name,
                f"session ran {tick.active_s:.0f} s",
                active_s=round(tick.active_s, 2),
                limit_s=tick.limits.session_max_s,
            )
        return None


@dataclass
class Exposure48h:
    name: str = "exposure_48h"
    on_frame: ClassVar[bool] = False

    def check(self, tick: Tick) -> Verdict | None:
        step = tick.step
        if step is None or not tick.motor_on:
            return None
        total = tick.prior_s(step.muscle, step.side) + tick.worked_s.get(
            (step.muscle, step.side), 0.0
        )
        if total >= step.per_48h_s_max:
            return _stop(
                self.name,
                f"{step.muscle} ({step.side}) has had {total:.0f} s in 48 hours",
                muscle=step.muscle,
                side=step.side,
                total_s=round(total, 2),
                limit_s=step.per_48h_s_max,
            )
        return None


@dataclass
class HeadMismatch:
    """The device sees a different head than the step needs, for longer than a frame or two."""

    name: str = "head_mismatch"
    on_frame: ClassVar[bool] = True
    since: float | None = field(default=None, init=False)

    def check(self, tick: Tick) -> Verdict | None:
        head = tick.telemetry.get("head")
        if head is None or tick.step is None or not tick.motor_on or head == tick.step.head:
            self.since = None
            return None
        if self.since is None:
            self.since = tick.now
        if tick.now - self.since < tick.limits.head_mismatch_s:
            return None
        return _stop(
            self.name,
            f"the {tick.step.head} head is needed but the device reports {head}",
            expected=tick.step.head.value,
            found=str(head),
        )


@dataclass
class StuckMotor:
    """A stop was written but the motor keeps turning: write it again, then cut the link."""

    name: str = "stuck_motor"
    on_frame: ClassVar[bool] = True
    escalated: Action | None = field(default=None, init=False)
    stop_seen: float | None = field(default=None, init=False)

    def check(self, tick: Tick) -> Verdict | None:
        if tick.stop_written_at != self.stop_seen:  # a new stop: start watching afresh
            self.stop_seen, self.escalated = tick.stop_written_at, None
        speed = tick.telemetry.get("speed_ppm")
        at = tick.telemetry.updated.get("speed_ppm")
        if tick.stop_written_at is None or speed is None or at is None or tick.motor_on:
            return None
        waited = at - tick.stop_written_at
        before = tick.speed_at_stop or 0.0
        if waited < tick.limits.stuck_after_s or speed < max(0.5 * before, 1.0):
            return None
        values = {"speed_ppm": speed, "speed_at_stop_ppm": before, "since_stop_s": round(waited, 3)}
        if self.escalated is None:
            self.escalated = Action.STOP_AGAIN
            return Verdict(
                self.name, Action.STOP_AGAIN, f"motor still at {speed:.0f} ppm after stop", values
            )
        if self.escalated is Action.STOP_AGAIN and waited >= 2 * tick.limits.stuck_after_s:
            self.escalated = Action.DROP_LINK
            return Verdict(
                self.name,
                Action.DROP_LINK,
                f"motor ignores stop at {speed:.0f} ppm: dropping the link",
                values,
            )
        return None


RULES: dict[str, Callable[[], Rule]] = {
    rule().name: rule
    for rule in (
        StaleTelemetry,
        Temperature,
        Force,
        Stall,
        Battery,
        DeviceFaults,
        HoldTime,
        MuscleSessionTime,
        SessionTime,
        Exposure48h,
        HeadMismatch,
        StuckMotor,
    )
}


@dataclass
class RuleSet:
    """Fresh instances of the rules in force; tests may leave one out to prove it matters."""

    rules: list[Rule] = field(default_factory=lambda: [make() for make in RULES.values()])

    @classmethod
    def without(cls, *names: str) -> RuleSet:
        unknown = set(names) - set(RULES)
        if unknown:
            raise UnknownNameError(f"no such rules: {sorted(unknown)}", f"known: {sorted(RULES)}")
        return cls([make() for name, make in RULES.items() if name not in names])

    def fresh(self) -> RuleSet:
        """The same rules, with the settings they were built with and their state reset.

        A rule's constructor arguments are its settings and its ``init=False``
        fields its state, so ``dataclasses.replace`` rebuilds it for a new
        session without losing a limit someone chose.
        """
        return RuleSet([dataclasses.replace(rule) for rule in self.rules])

    def __post_init__(self) -> None:
        # sorted once, as bound checks: the rules are checked on every tick and every frame of
        # every gun
        self._checks = {
            kind: [rule.check for rule in self.rules if rule.on_frame is kind]
            for kind in (True, False)
        }

    def check(self, tick: Tick, *, on_frame: bool) -> list[Verdict]:
        """The verdicts of the rules that run on a frame (``on_frame``) or on the tick."""
        return [v for check in self._checks[on_frame] if (v := check(tick))]
