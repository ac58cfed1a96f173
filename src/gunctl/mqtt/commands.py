"""Commands that arrive over MQTT, as pydantic models, and the refusals for bad ones.

A device command is a JSON object with an ``action``; the models are a union
discriminated on it, and every model forbids fields it does not know, so a
misspelt key is refused rather than ignored. Numbers are strict: ``true`` or
``"0.25"`` is not a number. Parsing never raises anything but
:class:`CommandError`, which carries a short machine-readable ``reason`` (counted
per reason by the bridge) and a message written for a person.

Stopping is lenient and starting is strict: a JSON object whose ``action`` is
``stop`` or ``pain_stop`` stops, whatever else it carries (unknown fields, an
``id`` that is not a short string or an integer); what was ignored is returned
with the command, for the result to say. Refusing a stop over a stray field
would leave a motor running for a typing mistake.

Every way into a device (``<device>/set``, Home Assistant's buttons, select and
number, which publish to that same topic) goes through :func:`parse_device_command`
and then through one executor, ``gunctl.daemon.Daemon.execute``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StrictInt, TypeAdapter, ValidationError

MAX_PAYLOAD = 4096  # bytes; anything longer is refused unread

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
STOPS = ("stop", "pain_stop")


class CommandError(Exception):
    """A command refused before or while it was carried out."""

    def __init__(
        self,
        reason: Reason,
        message: str,
        command_id: CommandId | None = None,
        action: str | None = None,
    ) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message
        self.command_id = command_id
        self.action = action  # when the payload named a known one


class _Command(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: CommandId | None = None  # echoed in the result, to match the two up


class StartCommand(_Command):
    """Start a protocol; fields left out come from the last ``select``, then the defaults."""

    action: Literal["start"]
    protocol: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    side: Side | None = None
    intensity_cap: IntensityCap | None = None


class SelectCommand(_Command):
    """Choose what the next ``start`` without arguments runs (Home Assistant's select/number)."""

    action: Literal["select"]
    protocol: Annotated[str, Field(min_length=1, max_length=64)] | None = None
    side: Side | None = None
    intensity_cap: IntensityCap | None = None


class ConfirmCommand(_Command):
    """A person says none of the warning signs apply: one start may follow, for a while."""

    action: Literal["confirm_no_red_flags"]


class SessionCommand(_Command):
    """A request on the session in progress; ``stop`` and ``pain_stop`` always stop the motor."""

    action: Literal["stop", "pause", "resume", "skip", "confirm_head", "pain_stop"]


DeviceCommand = Annotated[
    StartCommand | SelectCommand | ConfirmCommand | SessionCommand, Field(discriminator="action")
]
DEVICE_ACTIONS = (
    "start",
    "select",
    "confirm_no_red_flags",
    "stop",
    "pause",
    "resume",
    "skip",
    "confirm_head",
    "pain_stop",
)


class StopAllCommand(_Command):
    action: Literal["stop_all"]


BridgeCommand = Annotated[StopAllCommand, Field(discriminator="action")]
BRIDGE_ACTIONS = ("stop_all",)

T = TypeVar("T")

_DEVICE: TypeAdapter[DeviceCommand] = TypeAdapter(DeviceCommand)
_BRIDGE: TypeAdapter[BridgeCommand] = TypeAdapter(BridgeCommand)
_ID: TypeAdapter[CommandId] = TypeAdapter(CommandId)


@dataclass(frozen=True)
class Received(Generic[T]):
    """A command read from a payload, and the fields a lenient stop passed over."""

    command: T
    ignored: tuple[str, ...] = ()


def parse_device_command(payload: bytes) -> Received[DeviceCommand]:
    data = _object(payload)
    if data.get("action") in STOPS:
        command_id, ignored = _lenient(data)
        stop = SessionCommand(action=data["action"], id=command_id)
        return Received(stop, ignored)
    return Received(_validate(data, _DEVICE, DEVICE_ACTIONS))


def parse_bridge_command(payload: bytes) -> Received[BridgeCommand]:
    data = _object(payload)
    if data.get("action") in BRIDGE_ACTIONS:
        command_id, ignored = _lenient(data)
        return Received(StopAllCommand(action="stop_all", id=command_id), ignored)
    return Received(_validate(data, _BRIDGE, BRIDGE_ACTIONS))


def parse_stop(payload: bytes) -> Received[SessionCommand]:
    """What a stop topic received: a stop, whatever it says.

    ``{"action": "pain_stop"}`` makes it a pain stop; anything else, even a
    payload that is not JSON or is too large, is a plain stop, with what was
    passed over named in ``ignored``.
    """
    try:
        data = _object(payload)
    except CommandError:
        return Received(SessionCommand(action="stop"), ("payload",))
    action = data.get("action")
    command_id, ignored = _lenient(data)
    if action not in (None, *STOPS):
        ignored = ("action", *ignored)
    kind: Literal["stop", "pain_stop"] = "pain_stop" if action == "pain_stop" else "stop"
    return Received(SessionCommand(action=kind, id=command_id), ignored)


def _lenient(data: dict[str, Any]) -> tuple[CommandId | None, tuple[str, ...]]:
    """The id of a stop if it is a valid one, and the names of the fields passed over."""
    ignored = sorted(str(key)[:40] for key in data if key not in ("action", "id"))
    command_id = _id_of(data)
    if "id" in data and command_id is None:
        ignored.append("id")
    return command_id, tuple(ignored)


def _id_of(data: dict[str, Any]) -> CommandId | None:
    try:
        return _ID.validate_python(data.get("id"))
    except ValidationError:
        return None


def _object(payload: bytes) -> dict[str, Any]:
    """The payload as a JSON object, or CommandError; cheap checks first."""
    if len(payload) > MAX_PAYLOAD:
        raise CommandError(
            "too_large", f"the payload is {len(payload)} bytes; the most accepted is {MAX_PAYLOAD}"
        )
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CommandError("not_json", f"the payload is not JSON: {exc}") from None
    except RecursionError:  # a few thousand brackets fit in MAX_PAYLOAD
        raise CommandError("not_json", "the JSON is nested too deeply") from None
    if not isinstance(data, dict):
        raise CommandError(
            "not_json", f"the payload must be a JSON object, not {type(data).__name__}"
        )
    return data


def _validate(data: dict[str, Any], adapter: TypeAdapter[T], actions: tuple[str, ...]) -> T:
    command_id = _id_of(data)
    action = data.get("action")
    if action not in actions:
        shown = "no action" if action is None else f"unknown action {str(action)[:40]!r}"
        raise CommandError("invalid", f"{shown}; expected one of: {', '.join(actions)}", command_id)
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise CommandError("invalid", describe(exc), command_id, str(action)) from None


def describe(exc: ValidationError) -> str:
    """One line per problem, naming the field: what a person needs to fix the command."""
    problems: list[str] = []
    for error in exc.errors():
        path = [str(p) for p in error["loc"][1:]]  # the first element is the union tag
        field = ".".join(path) or "payload"
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown field {field!r}")
        else:
            problems.append(f"{field}: {_message(error)}")
    return "; ".join(problems)


def _message(error: Any) -> str:
    message = str(error["msg"])
    if "input" in error and error["type"] != "missing":
        return f"{message} (got {json.dumps(error['input'], default=str)[:40]})"
    return message
