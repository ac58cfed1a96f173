"""GunState: one public, versioned snapshot of a gun, the one thing front ends read.

The CLI's live view, the MQTT state and telemetry payloads (and through them
Home Assistant) and ``Gun.state()`` all read a :class:`GunState`, never the
Supervisor: :func:`snapshot` is the one place that looks inside it. Renaming
an internal field then changes this module, not what users see. The MQTT
state document is this model's fields plus what only the daemon knows (see
``gunctl.mqtt.payloads``); ``version`` goes up when a field changes meaning or
goes away, not when one is added.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from gunctl.control.events import Event, SafetyStop, SessionCompleted, SessionStarted
from gunctl.control.session import Phase, Session
from gunctl.specs.models import Capabilities, DeviceSpec
from gunctl.specs.speed import Setpoint

if TYPE_CHECKING:
    from gunctl.control.supervisor import Supervisor

STATE_VERSION = 1

PhaseName = Literal[
    "idle", "running", "paused", "waiting_for_head", "resting", "done", "safety_stop"
]
# What a person would call the state of a gun, one word each (Home Assistant's
# "Session" enum sensor). The order is the order of the documentation.
PHASES: tuple[PhaseName, ...] = PhaseName.__args__  # type: ignore[attr-defined]
Ended = Literal["idle", "done", "safety_stop"]  # what a gun shows once its session is over


class _State(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StepState(_State):
    """The step in progress."""

    index: int  # 0-based position in the plan
    of: int  # steps in the plan
    muscle: str
    side: str
    title: str  # "Gluteus maximus (left)"
    head: str
    placement: str
    phase: str  # the step's own phase: head_change, ramp_up, hold, ramp_down, rest
    phase_s: float  # time spent in that phase, pauses excluded
    phase_total_s: float  # how long that phase lasts (0 for a head change)
    remaining_s: float  # left in this step


class SafetyStopState(_State):
    """The last safety stop: the rule that stopped the motor, and why."""

    rule: str
    message: str
    at: float  # session clock seconds

    @classmethod
    def of(cls, stop: SafetyStop) -> SafetyStopState:
        """The public view of a ``safety_stop`` event."""
        return cls(rule=stop.rule, message=stop.message, at=round(stop.at, 3))


class GunState(_State):
    """A gun at one moment: its session, its motor and what it last reported."""

    version: int = STATE_VERSION
    device: str
    spec: str | None  # the firmware spec's name, once known
    model: str | None  # the spec's title, e.g. "gunctl open gun"
    connected: bool
    running: bool  # a session is in progress
    phase: PhaseName
    paused: bool
    waiting_for_head: bool
    protocol: str | None
    protocol_title: str | None
    step: StepState | None
    session_active_s: float | None  # session time so far, pauses excluded
    session_planned_s: float | None
    session_remaining_s: float | None
    speed_ppm: float | None  # measured; None for a gun that does not report it
    setpoint_ppm: int  # what the gun was last told
    setpoint_level: int | None  # for a gun driven by levels
    intensity: float  # the setpoint as a share (0..1) of the gun's range
    motor_running: bool
    battery_pct: float | None
    temperature_c: float | None
    force_n: float | None
    firmware: str | None
    telemetry: dict[str, Any]  # every field the gun reports, as last reported
    frames: int  # telemetry frames taken in
    bad_frames: int  # frames refused as malformed
    last_safety_stop: SafetyStopState | None


class Ending:
    """How a gun's last session ended, followed from its events, across reconnections.

    A new Supervisor after a lost link knows nothing of the session before it;
    whoever keeps the gun (the daemon's slot, the ``Gun`` facade) keeps this.
    """

    def __init__(self) -> None:
        self.ended: Ended = "idle"
        self.last_safety_stop: SafetyStopState | None = None

    @property
    def fault(self) -> bool:
        """The last session ended in a safety stop."""
        return self.ended == "safety_stop"

    def see(self, event: Event) -> None:
        """Take in one session event."""
        if isinstance(event, SessionStarted):
            self.ended = "idle"
        elif isinstance(event, SessionCompleted):
            self.ended = "done"
        elif isinstance(event, SafetyStop):
            self.ended = "safety_stop"
            self.last_safety_stop = SafetyStopState.of(event)


def intensity_of(setpoint: Setpoint, caps: Capabilities) -> float:
    """The share of the device's range (0..1) a setpoint runs at: the inverse of setpoint_for."""
    if setpoint.stopped:
        return 0.0
    if caps.speed is not None:
        low, high = caps.speed.min_ppm, caps.speed.max_ppm
    else:
        assert caps.levels_ppm is not None
        low, high = caps.levels_ppm[0], caps.levels_ppm[-1]
    if high <= low:
        return 1.0
    return round(max(0.0, min(1.0, (setpoint.ppm - low) / (high - low))), 3)


def rounded(value: Any, digits: int = 1) -> Any:
    """Floats rounded, sets (fault flags) as sorted lists: what JSON can carry."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, set | frozenset):
        return sorted(value)
    return value


def phase_of(session: Session | None, ended: Ended) -> PhaseName:
    """The session in progress in one word, or ``ended`` when none is."""
    if session is None:
        return ended
    if session.paused is not None:
        return "paused"
    if session.phase is Phase.HEAD_CHANGE:
        return "waiting_for_head"
    return "resting" if session.phase is Phase.REST else "running"


def _phase_total(session: Session) -> float:
    step = session.step
    assert step is not None
    return {
        Phase.RAMP_UP: step.ramp_s,
        Phase.HOLD: step.hold_s,
        Phase.RAMP_DOWN: step.ramp_s,
        Phase.REST: step.rest_s,
    }.get(session.phase, 0.0)


def _step(session: Session) -> StepState | None:
    planned = session.step
    if planned is None:
        return None
    return StepState(
        index=planned.index,
        of=len(session.plan.steps),
        muscle=planned.muscle,
        side=planned.side,
        title=f"{planned.muscle_title} ({planned.side})",
        head=planned.head.value,
        placement=planned.placement,
        phase=session.phase.value,
        phase_s=round(session.phase_s, 3),
        phase_total_s=_phase_total(session),
        remaining_s=round(session.remaining_s, 1),
    )


def _session(session: Session | None) -> dict[str, Any]:
    """The fields that describe the session in progress; all empty when there is none."""
    if session is None:
        return {
            "protocol": None,
            "protocol_title": None,
            "step": None,
            "session_active_s": None,
            "session_planned_s": None,
            "session_remaining_s": None,
        }
    return {
        "protocol": session.plan.protocol,
        "protocol_title": session.plan.title,
        "step": _step(session),
        "session_active_s": round(session.active_s, 1),
        "session_planned_s": round(session.plan.planned_s, 1),
        "session_remaining_s": round(session.session_remaining_s, 1),
    }


def _measured(supervisor: Supervisor) -> dict[str, Any]:
    """What the gun reports and what it was last told to do."""
    telemetry = supervisor.telemetry
    setpoint = supervisor.driver.setpoint
    speed = telemetry.get("speed_ppm")
    return {
        "speed_ppm": speed,
        "setpoint_ppm": setpoint.ppm,
        "setpoint_level": setpoint.level,
        "intensity": intensity_of(setpoint, supervisor.spec.capabilities),
        # a gun that reports its speed is running while it turns; one that does not, while
        # it is told to
        "motor_running": speed > 0 if speed is not None else not setpoint.stopped,
        "battery_pct": rounded(telemetry.get("battery_pct")),
        "temperature_c": rounded(telemetry.get("temperature_c")),
        "force_n": rounded(telemetry.get("force_n")),
        "firmware": supervisor.firmware,
        "telemetry": {name: rounded(value, 3) for name, value in telemetry.values.items()},
        "frames": supervisor.link_stats.frames,
        "bad_frames": supervisor.link_stats.decode_errors,
    }


_NOT_CONNECTED: dict[str, Any] = {
    "speed_ppm": None,
    "setpoint_ppm": 0,
    "setpoint_level": None,
    "intensity": 0.0,
    "motor_running": False,
    "battery_pct": None,
    "temperature_c": None,
    "force_n": None,
    "firmware": None,
    "telemetry": {},
    "frames": 0,
    "bad_frames": 0,
}


def snapshot(
    device: str,
    supervisor: Supervisor | None,
    *,
    spec: DeviceSpec | None = None,
    connected: bool = True,
    ending: Ending | None = None,
) -> GunState:
    """The state of ``device`` now, read from its Supervisor (None while not connected).

    ``ending`` says how the last session ended, as the gun's keeper followed
    it across reconnections; without it, a gun with no session is idle.
    """
    ending = ending or Ending()
    if supervisor is None:
        return _state(device, spec, None, connected=False, ending=ending, measured=_NOT_CONNECTED)
    session = supervisor.session
    live = session if session is not None and not session.done else None
    measured = _measured(supervisor)
    return _state(
        device, supervisor.spec, live, connected=connected, ending=ending, measured=measured
    )


def _state(
    device: str,
    spec: DeviceSpec | None,
    live: Session | None,
    *,
    connected: bool,
    ending: Ending,
    measured: dict[str, Any],
) -> GunState:
    """A GunState from its parts: the session in progress (``live``) and the measurements."""
    return GunState(
        device=device,
        spec=spec.name if spec is not None else None,
        model=spec.title if spec is not None else None,
        connected=connected,
        running=live is not None,
        phase=phase_of(live, ending.ended),
        paused=live is not None and live.paused is not None,
        waiting_for_head=live is not None and live.phase is Phase.HEAD_CHANGE,
        **_session(live),
        **measured,
        last_safety_stop=ending.last_safety_stop,
    )
