"""A protocol resolved for one device and one person: the steps the Supervisor runs.

Resolving is where the caps meet: every step's setpoint is the lowest of the
step's intensity, the muscle's cap, the person's cap and the device's top
speed, and the plan records which of them binds. A protocol the device or the
person cannot run safely (a head they do not own, a muscle out of reach) is
refused here, before anything moves.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from typing import Literal

from pydantic import Field

from gunctl.datafile import DataModel
from gunctl.errors import RequestRefusedError
from gunctl.heads import Head
from gunctl.profiles.models import Muscle, Protocol
from gunctl.specs.models import DeviceSpec
from gunctl.specs.speed import setpoint_for

Binding = Literal["step", "muscle", "user"]


class PlanError(RequestRefusedError):
    """The protocol cannot be run safely on this device by this person: the start is refused."""

    reason = "plan_refused"


class BlockedToday(PlanError):
    """Every step left is on a muscle side that a pain stop has blocked for today."""

    reason = "blocked_today"


class Skipped(DataModel):
    """A muscle side left out of a plan, and why."""

    muscle: str
    side: str
    reason: str  # e.g. "sharp pain at 14:02"

    def __str__(self) -> str:
        return f"{self.muscle} {self.side}, {self.reason}"


class PlannedStep(DataModel):
    index: int  # position in the plan
    protocol_step: int  # position of the step in the protocol file
    muscle: str
    muscle_title: str  # the catalogue's name for the muscle, for people to read
    side: Literal["left", "right"]
    head: Head
    intensity: float  # after every cap
    cap: float  # the lower of the muscle's and the person's caps: no write may go above it
    binding: Binding  # which cap decided the intensity
    ppm: int
    level: int | None
    hold_s: float
    ramp_s: float
    rest_s: float
    placement: str
    # the muscle's envelope, carried along so the safety rules need no catalogue
    hold_max_s: float
    session_s_max: float
    per_48h_s_max: float
    force_cap_n: float | None


class Plan(DataModel):
    protocol: str
    title: str
    spec: str
    user_cap: float
    steps: list[PlannedStep] = Field(min_length=1)
    skipped: list[Skipped] = []  # muscle sides left out today

    @property
    def planned_s(self) -> float:
        return sum(2 * s.ramp_s + s.hold_s + s.rest_s for s in self.steps)

    @property
    def heads(self) -> list[Head]:
        return list(dict.fromkeys(s.head for s in self.steps))


def make_plan(
    protocol: Protocol,
    muscles: Mapping[str, Muscle],
    spec: DeviceSpec,
    *,
    side: Literal["left", "right", "both"] = "both",
    user_cap: float = 1.0,
    owned_heads: Collection[Head] | None = None,
    blocked: Mapping[tuple[str, str], str] | None = None,
) -> Plan:
    """Resolve ``protocol`` for one device and person, leaving out ``blocked`` muscle sides.

    ``blocked`` maps (muscle, side) to why it may not be worked today (the
    pain blocks from the history); its steps are skipped, and if none are
    left the plan is refused with ``BlockedToday``.
    """
    # a bool is an int to Python, and True would read as a cap of 1: numbers only
    if isinstance(user_cap, bool) or not isinstance(user_cap, int | float):
        raise PlanError(f"the intensity cap must be a number, not {user_cap!r}")
    if not 0 < user_cap <= 1:
        raise PlanError(f"the intensity cap must be above 0 and at most 1, not {user_cap:g}")
    if side not in ("left", "right", "both"):
        raise PlanError(f"the side must be left, right or both, not {side!r}")
    holds = protocol.expanded(side)
    if not holds:
        raise PlanError(f"{protocol.name} has no steps on the {side} side")
    blocked = blocked or {}
    skipped = [
        Skipped(muscle=m, side=s, reason=blocked[(m, s)])
        for m, s in dict.fromkeys((h.muscle, h.side) for h in holds)
        if (m, s) in blocked
    ]
    holds = [h for h in holds if (h.muscle, h.side) not in blocked]
    if not holds:
        raise BlockedToday(
            f"nothing of {protocol.name} is left to run today: "
            f"{'; '.join(str(s) for s in skipped)}. A pain stop blocks that muscle side "
            "until midnight; if the pain persists, see a professional."
        )
    if owned_heads is not None:
        needed = dict.fromkeys(hold.head for hold in holds)
        missing = [h.value for h in needed if h not in owned_heads]
        if missing:
            raise PlanError(
                f"{protocol.name} needs the {', '.join(missing)} head, which you do not have; "
                "gunctl will not substitute a head (the tip head on the piriformis is chosen "
                "for a reason). Pass --heads with every head you own."
            )
    steps: list[PlannedStep] = []
    for i, hold in enumerate(holds):
        muscle = muscles[hold.muscle]
        if not muscle.reachable or muscle.hold_s is None:
            raise PlanError(f"{muscle.name} cannot be reached with a massage gun")
        caps: dict[Binding, float] = {
            "step": hold.intensity,
            "muscle": muscle.intensity_cap,
            "user": user_cap,
        }
        binding = min(caps, key=lambda k: caps[k])
        intensity = caps[binding]
        setpoint = setpoint_for(intensity, spec.capabilities)
        steps.append(
            PlannedStep(
                index=i,
                protocol_step=hold.index,
                muscle=hold.muscle,
                muscle_title=muscle.name,
                side=hold.side,
                head=hold.head,
                intensity=intensity,
                cap=min(muscle.intensity_cap, user_cap),
                binding=binding,
                ppm=setpoint.ppm,
                level=setpoint.level,
                hold_s=hold.hold_s,
                ramp_s=hold.ramp_s,
                rest_s=hold.rest_s,
                placement=hold.placement,
                hold_max_s=muscle.hold_s.max,
                session_s_max=muscle.session_s_max,
                per_48h_s_max=muscle.per_48h_s_max,
                force_cap_n=muscle.force_cap_n,
            )
        )
    return Plan(
        protocol=protocol.name,
        title=protocol.title,
        spec=spec.name,
        user_cap=user_cap,
        steps=steps,
        skipped=skipped,
    )


class ExposureCheck(DataModel):
    muscle: str
    side: str
    prior_s: float  # worked in the last 48 hours
    planned_s: float  # contact time this plan would add
    limit_s: float

    @property
    def over(self) -> bool:
        return self.prior_s + self.planned_s > self.limit_s


Key = tuple[str, str]  # (muscle, side)


class Want(DataModel):
    """The contact time a plan would add to one muscle side, and that side's 48-hour cap."""

    planned_s: float
    limit_s: float


class ExposureRefused(RequestRefusedError):
    """A start that would take a muscle side past its 48-hour cap; nothing was started.

    Raised by the exposure ledger (``History.reserve``) as the Supervisor books
    a start, and handed as it is to whoever asked for the start: ``gun.start``
    or ``gun.run`` from Python, ``gunctl run``, an MQTT start. ``checks`` are the
    sides over their cap, with the numbers.
    """

    reason = "exposure_48h"

    def __init__(self, checks: list[ExposureCheck]) -> None:
        self.checks = checks
        first = checks[0]
        super().__init__(
            f"exposure_48h: {first.muscle} ({first.side}) has had {first.prior_s:.0f} s in the "
            "last 48 hours (sessions running now included); this session would add "
            f"{first.planned_s:.0f} s, over its {first.limit_s:.0f} s cap",
            "give that side a rest: its time leaves the total 48 hours after each session, "
            "or start a protocol that spares it",
        )


def wants(plan: Plan) -> dict[Key, Want]:
    """Per muscle side: the contact time the plan adds (ramps and holds) and the cap."""
    planned: dict[Key, float] = {}
    limits: dict[Key, float] = {}
    for step in plan.steps:
        key = (step.muscle, step.side)
        planned[key] = planned.get(key, 0.0) + 2 * step.ramp_s + step.hold_s
        limits[key] = step.per_48h_s_max
    return {key: Want(planned_s=planned[key], limit_s=limits[key]) for key in planned}


def exposure_checks(plan: Plan, exposure_s: Callable[[str, str], float]) -> list[ExposureCheck]:
    """Per muscle side: what the last 48 hours hold, what this plan adds, and the cap."""
    return [
        ExposureCheck(muscle=m, side=s, prior_s=exposure_s(m, s), **want.model_dump())
        for (m, s), want in wants(plan).items()
    ]
