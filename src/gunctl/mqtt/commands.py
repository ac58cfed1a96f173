"""Commands that arrive over MQTT, as pydantic models, and the refusals for bad ones.

A device command is a JSON object with an ``action``; the models are a union
discriminated on it, and every model forbids fields it does not know, so a
misspelt key is refused rather than ignored. Parsing never raises anything but
:class:`CommandError`, which carries a short machine-readable ``reason`` (counted
per reason by the bridge) and a message written for a person.

Every way into a device (``<device>/set``, Home Assistant's buttons, select and
number, which publish to that same topic) goes through :func:`parse_device_command`
and then through one executor, ``gunctl.daemon.Daemon.execute``.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

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
]
REASONS: tuple[Reason, ...] = Reason.__args__  # type: ignore[attr-defined]

Side = Literal["left", "right", "both"]
CommandId = Annotated[str, Field(max_length=128)] | int
IntensityCap = Annotated[float, Field(gt=0.0, le=1.0)]


class CommandError(Exception):
    """A command refused before or while it was carried out."""

    def __init__(self, reason: Reason, message: str, command_id: CommandId | None = None) -> None:
        super().__init__(message)
        self.reason: Reason = reason
        self.message = message
        self.command_id = command_id


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


class SessionCommand(_Command):
    """A request on the session in progress; ``stop`` and ``pain_stop`` always stop the motor."""

    action: Literal["stop", "pause", "resume", "skip", "confirm_head", "pain_stop"]


DeviceCommand = Annotated[
    StartCommand | SelectCommand | SessionCommand, Field(discriminator="action")
]
DEVICE_ACTIONS = ("start", "select", "stop", "pause", "resume", "skip", "confirm_head", "pain_stop")


class StopAllCommand(_Command):
    action: Literal["stop_all"]


BridgeCommand = Annotated[StopAllCommand, Field(discriminator="action")]
BRIDGE_ACTIONS = ("stop_all",)

T = TypeVar("T")

_DEVICE: TypeAdapter[DeviceCommand] = TypeAdapter(DeviceCommand)
_BRIDGE: TypeAdapter[BridgeCommand] = TypeAdapter(BridgeCommand)


def parse_device_command(payload: bytes) -> DeviceCommand:
    return _parse(payload, _DEVICE, DEVICE_ACTIONS)


def parse_bridge_command(payload: bytes) -> BridgeCommand:
    return _parse(payload, _BRIDGE, BRIDGE_ACTIONS)


def _parse(payload: bytes, adapter: TypeAdapter[T], actions: tuple[str, ...]) -> T:
    if len(payload) > MAX_PAYLOAD:
        raise CommandError(
            "too_large", f"the payload is {len(payload)} bytes; the most accepted is {MAX_PAYLOAD}"
        )
    try:
        data = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CommandError("not_json", f"the payload is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise CommandError(
            "not_json", f"the payload must be a JSON object, not {type(data).__name__}"
        )
    command_id = data.get("id") if isinstance(data.get("id"), str | int) else None
    action = data.get("action")
    if action not in actions:
        shown = "no action" if action is None else f"unknown action {action!r}"
        raise CommandError("invalid", f"{shown}; expected one of: {', '.join(actions)}", command_id)
    try:
        return adapter.validate_python(data)
    except ValidationError as exc:
        raise CommandError("invalid", describe(exc), command_id) from None


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
