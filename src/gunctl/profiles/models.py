"""Muscles, their safety envelope, and the protocols that treat them.

``profiles/muscles.yaml`` is a :class:`MuscleCatalogue`: for every muscle, the
heads that suit it, how hard and how long it may be worked, and where to put the
head. ``profiles/protocols/*.yaml`` are :class:`Protocol` files: an ordered list
of :class:`Step` objects, each one hold on one point of one muscle.

These models check what a single file can check on its own (types, ranges, a
muscle's envelope being self-consistent). Checks that need both a protocol and
the catalogue (is this head allowed on that muscle, is the intensity under its
cap) live in :mod:`gunctl.profiles.loader`, which knows the line of every value.

The numeric limits below come from the self-massage literature gunctl is built
on: holds of 30 to 90 seconds on one point, and sessions of 5 to 10 minutes.
"""

from __future__ import annotations

from collections import defaultdict
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, StringConstraints, model_validator
from pydantic_core import PydanticCustomError

from gunctl.datafile import DataModel, suggest
from gunctl.heads import Head

MAX_HOLD_S = 90.0
"""The longest hold on one point that any source gives; no muscle may allow more."""

MAX_SESSION_S = 600.0
"""A whole protocol, every side and rest included, must fit in 10 minutes."""

MAX_RAMP_S = 10.0
"""A ramp up or down longer than this is almost certainly a typo."""

MAX_REST_S = 120.0
"""A rest after a step longer than this is almost certainly a typo."""

NERVE_INTENSITY_CAP = 0.4
"""The highest ``intensity_cap`` a muscle lying near the sciatic nerve may have."""

KEBAB = r"^[a-z0-9]+(-[a-z0-9]+)*$"

Name = Annotated[str, StringConstraints(pattern=KEBAB)]
Text = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1)]
Fraction = Annotated[float, Field(strict=True, ge=0.0, le=1.0)]
Seconds = Annotated[float, Field(strict=True, ge=0.0)]


def _known_head(value: object) -> object:
    """Reject an unknown head name with the nearest known spelling."""
    if isinstance(value, str) and value not in {h.value for h in Head}:
        known = [h.value for h in Head]
        hint = suggest(value, known) or f" (known heads: {', '.join(known)})"
        raise PydanticCustomError("unknown_head", f"unknown head {value!r}{hint}")
    return value


HeadName = Annotated[Head, BeforeValidator(_known_head)]


class Side(StrEnum):
    LEFT = "left"
    RIGHT = "right"
    BOTH = "both"  # the left side, then the right side


class Depth(StrEnum):
    SUPERFICIAL = "superficial"
    INTERMEDIATE = "intermediate"
    DEEP = "deep"


class HeadPolicy(DataModel):
    """Which heads suit a muscle.

    ``recommended`` heads are offered first and must also be ``allowed``. A head
    in ``forbidden`` is refused with that word, for a head that would do harm
    there; a head in neither list is simply not one a step may use.
    """

    recommended: list[HeadName] = []
    allowed: list[HeadName] = []
    forbidden: list[HeadName] = []

    @model_validator(mode="after")
    def _consistent(self) -> HeadPolicy:
        extra = [h.value for h in self.recommended if h not in self.allowed]
        if extra:
            raise PydanticCustomError(
                "head_policy", f"recommended heads {extra} are missing from allowed"
            )
        both = [h.value for h in self.allowed if h in self.forbidden]
        if both:
            raise PydanticCustomError("head_policy", f"heads {both} are both allowed and forbidden")
        return self


class HoldRange(DataModel):
    """How long one hold on one point of a muscle may last, in seconds."""

    min: Annotated[float, Field(strict=True, gt=0.0)]
    max: Annotated[float, Field(strict=True, gt=0.0, le=MAX_HOLD_S)]

    @model_validator(mode="after")
    def _ordered(self) -> HoldRange:
        if self.min > self.max:
            raise PydanticCustomError(
                "hold_range", f"min {self.min:g} s is above max {self.max:g} s"
            )
        return self


class Muscle(DataModel):
    """One muscle and the envelope every step on it must stay inside.

    ``intensity_cap`` is device-independent (0 to 1 of whatever the gun can
    do). ``session_s_max`` bounds the time on this muscle, per side, in one
    session; ``per_48h_s_max`` bounds it, per side, over any 48 hours.
    ``force_cap_n`` optionally bounds the pressing force, in newtons, for guns
    that report it; the sources give no figure, so the shipped muscles leave it
    unset and rely on the intensity cap.
    """

    name: Text
    region: Text
    depth: Depth
    near_sciatic_nerve: bool
    reachable: bool
    heads: HeadPolicy
    intensity_cap: Fraction
    hold_s: HoldRange | None = None
    session_s_max: Seconds
    per_48h_s_max: Seconds
    pulsing_allowed: bool
    force_cap_n: Annotated[float, Field(strict=True, gt=0.0)] | None = None
    cautions: list[Text] = []
    placement: Text

    @model_validator(mode="after")
    def _envelope(self) -> Muscle:
        problems: list[str] = []
        if self.reachable:
            if not self.heads.recommended:
                problems.append("a reachable muscle needs at least one recommended head")
            if self.hold_s is None:
                problems.append("hold_s is required for a reachable muscle")
        elif self.heads.allowed:
            problems.append("heads.allowed must be empty for a muscle a gun cannot reach")
        if self.near_sciatic_nerve:
            if self.intensity_cap > NERVE_INTENSITY_CAP:
                problems.append(
                    f"intensity_cap {self.intensity_cap:g} is above {NERVE_INTENSITY_CAP:g}, "
                    "the most for a muscle near the sciatic nerve"
                )
            if self.pulsing_allowed:
                problems.append("pulsing_allowed must be false near the sciatic nerve")
        if self.per_48h_s_max < self.session_s_max:
            problems.append(
                f"per_48h_s_max {self.per_48h_s_max:g} s is below "
                f"session_s_max {self.session_s_max:g} s"
            )
        if problems:
            raise PydanticCustomError("muscle_envelope", "; ".join(problems))
        return self


class MuscleCatalogue(DataModel):
    """The whole of a ``muscles.yaml`` file, keyed by muscle id (kebab-case)."""

    muscles: dict[Name, Muscle]


class Step(DataModel):
    """One hold on one point of one muscle.

    The motor ramps up over ``ramp_s``, holds for ``hold_s``, ramps down over
    ``ramp_s`` again, then rests for ``rest_s`` while the person moves the gun.
    A ``both`` step is done on the left side, then on the right.
    """

    muscle: Name
    side: Side
    head: HeadName
    intensity: Annotated[float, Field(strict=True, gt=0.0, le=1.0)]
    hold_s: Annotated[float, Field(strict=True, gt=0.0, le=MAX_HOLD_S)]
    ramp_s: Annotated[float, Field(strict=True, ge=0.0, le=MAX_RAMP_S)]
    rest_s: Annotated[float, Field(strict=True, ge=0.0, le=MAX_REST_S)]
    pulsing: bool = False
    placement: Text

    @property
    def sides(self) -> tuple[Literal["left", "right"], ...]:
        if self.side is Side.BOTH:
            return ("left", "right")
        return ("left",) if self.side is Side.LEFT else ("right",)


class ExpandedStep(DataModel):
    """A step resolved to exactly one side: what the gun does next."""

    index: int  # the position of the step it came from in ``Protocol.steps``
    muscle: str
    side: Literal["left", "right"]
    head: Head
    intensity: float
    hold_s: float
    ramp_s: float
    rest_s: float
    pulsing: bool
    placement: str

    @property
    def contact_s(self) -> float:
        """Time the running head spends on the muscle: both ramps and the hold."""
        return 2 * self.ramp_s + self.hold_s

    @property
    def duration_s(self) -> float:
        """Contact time plus the rest that follows."""
        return self.contact_s + self.rest_s


class Protocol(DataModel):
    """A routine: ``name`` must equal the file's stem."""

    name: Name
    title: Text
    description: Text
    steps: Annotated[list[Step], Field(min_length=1)]

    def expanded(self, side: Literal["left", "right", "both"] = "both") -> list[ExpandedStep]:
        """The holds in the order they are done, for the sides asked for.

        Step order is kept: a ``both`` step becomes its left hold followed at
        once by its right hold, in its own place, so a person finishes one
        point on both sides before moving to the next point. With ``side`` set
        to ``left`` or ``right``, holds on the other side are left out.
        """
        out: list[ExpandedStep] = []
        for index, step in enumerate(self.steps):
            for one in step.sides:
                if side != "both" and one != side:
                    continue
                out.append(
                    ExpandedStep(
                        index=index,
                        muscle=step.muscle,
                        side=one,
                        head=step.head,
                        intensity=step.intensity,
                        hold_s=step.hold_s,
                        ramp_s=step.ramp_s,
                        rest_s=step.rest_s,
                        pulsing=step.pulsing,
                        placement=step.placement,
                    )
                )
        return out

    def total_s(self, side: Literal["left", "right", "both"] = "both") -> float:
        """Ramps up and down, holds and rests of every expanded hold, in seconds."""
        return sum(s.duration_s for s in self.expanded(side))

    def contact_s_by_muscle(self) -> dict[tuple[str, str], float]:
        """Running time on each (muscle, side), the figure ``session_s_max`` bounds."""
        out: dict[tuple[str, str], float] = defaultdict(float)
        for s in self.expanded():
            out[(s.muscle, s.side)] += s.contact_s
        return dict(out)

    @property
    def heads(self) -> list[Head]:
        """The heads the protocol uses, in the order it first needs them."""
        return list(dict.fromkeys(step.head for step in self.steps))
