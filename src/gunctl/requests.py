"""The one request vocabulary: what may be asked of a gun, whoever asks.

The actions on a session (:data:`ActionName`) are spelled once, here, and
used by the Supervisor, the daemon and MQTT alike: ``pause``, ``resume``,
``skip``, ``confirm_head``, ``stop`` and ``pain_stop``. ``stop`` and
``pain_stop`` are the stops (:data:`STOPS`): they always stop the motor.

Two layers use them:

- the Supervisor, the only writer to a device, takes a :class:`Start` (a plan
  made already) or a :class:`SessionAction`;
- the daemon takes device commands (:data:`DeviceCommand`): a start names a
  protocol, a select chooses one for later, a confirmation says no warning sign
  applies, a :class:`SessionCommand` carries one action. They are pydantic
  models that forbid unknown fields, so MQTT parses a payload straight into
  them; a refusal is a :class:`CommandError` with a machine-readable reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from gunctl.errors import RequestRefusedError
from gunctl.profiles.plan import Plan

ActionName = Literal["pause", "resume", "skip", "confirm_head", "stop", "pain_stop"]
STOPS: tuple[ActionName, ...] = ("stop", "pain_stop")

# -- what the Supervisor takes -----------------------------------------------------


@dataclass(frozen=True)
class Start:
    """Start this plan (made with ``make_plan``) on the Supervisor's device."""

    plan: Plan


@dataclass(frozen=True)
class SessionAction:
    """One action on the session in progress; a stop is taken even with no session."""

    action: ActionName
    # for a stop: why, as the session's end reason (a person quitting is not an interruption)
    reason: str = "stopped"
    message: str = "stopped on request"


Request = Start | SessionAction

# -- what the daemon takes -----------------------------------------------------------

Reason = Literal[
    "too_large",  # over MAX_PAYLOAD bytes
    "not_json",  # not UTF-8 JSON, or not a JSON object
    "invalid",  # unknown action or field, a value of the wrong type or out of range
    "unknown_protocol",  # no protocol by that name
    "unknown_device",  # no instance serves that device id
    "busy",  # a start while a session runs
    "red_flags_not_acknowledged",  # starts are refused until the config says the flags were read
    "offline",  # the device's link is down
    "refused",  # the plan or the Supervisor refused it; the message says why
    "cancelled",  # a stop for the same gun arrived after it and before it ran
    "retained",  # published with the retain flag: it would run again on every reconnect
    "overloaded",  # shed unread in a flood, while the daemon had too many messages waiting
]
REASONS: tuple[Reason, ...] = Reason.__args__  # type: ignore[attr-defined]

Side = Literal["left", "right", "both"]
CommandId = Annotated[str, Field(max_length=128, strict=True)] | StrictInt
IntensityCap = Annotated[float, Field(gt=0.0, le=1.0, strict=True)]
Pain = Annotated[int, Field(ge=0, le=10, strict=True)]  # the diary's 0-10 (gunctl.store.diary)
Reach = Literal["buttock", "thigh", "below_knee", "foot"]  # how far down the leg it reaches
# kept in the diary and logged: no control characters, which could forge a log line
Note = Annotated[str, Field(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$", strict=True)]


class CommandError(RequestRefusedError):
    """A command refused before or while it was carried out; ``reason`` is one of REASONS."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        command_id: CommandId | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(message, reason=reason)
        self.reason: Reason = reason
        self.message = message
        self.command_id = command_id
        self.action = action  # when the payload named a known one


class BaseCommand(BaseModel):
    """What every command has: an optional id, echoed in its result."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: CommandId | None = None  # echoed in the result, to match the two up


class StartCommand(BaseCommand):
    """Start a protocol; fields left out come from the last ``select``, then the defaults."""

    action: Literal["start"]
    protocol: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    side: Side | None = None
    intensity_cap: IntensityCap | None = None
    # the diary's score before this session; either given (even null) records it,
    # both null as skipped, and a score that refuses (severe pain) refuses this start
    pain_before: Pain | None = None
    reach_before: Reach | None = None

    @property
    def scored(self) -> bool:
        """Whether the command answers the diary's question before the session."""
        return bool({"pain_before", "reach_before"} & self.model_fields_set)


class SelectCommand(BaseCommand):
    """Choose what the next ``start`` without arguments runs (Home Assistant's select/number)."""

    action: Literal["select"]
    protocol: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    side: Side | None = None
    intensity_cap: IntensityCap | None = None


class ConfirmCommand(BaseCommand):
    """A person says none of the warning signs apply: one start may follow, for a while."""

    action: Literal["confirm_no_red_flags"]


class ScoreCommand(BaseCommand):
    """A pain score for the diary: before the next session, or after this gun's last one.

    Neither ``pain`` nor ``reach`` records the question as skipped.
    """

    action: Literal["score"]
    moment: Literal["before", "after"]
    pain: Pain | None = None
    reach: Reach | None = None


class SeenCommand(BaseCommand):
    """A doctor or physiotherapist has seen the person: lifts a diary refusal, new baseline."""

    action: Literal["professional_seen"]
    note: Note = ""


class SessionCommand(BaseCommand):
    """A request on the session in progress; ``stop`` and ``pain_stop`` always stop the motor."""

    action: ActionName


DeviceCommand = Annotated[
    StartCommand | SelectCommand | ConfirmCommand | ScoreCommand | SeenCommand | SessionCommand,
    Field(discriminator="action"),
]
DEVICE_ACTIONS: tuple[str, ...] = (
    "start",
    "select",
    "confirm_no_red_flags",
    "score",
    "professional_seen",
    *ActionName.__args__,  # type: ignore[attr-defined]
)
