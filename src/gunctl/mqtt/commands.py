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

from pydantic import Field, TypeAdapter, ValidationError

from gunctl.requests import (
    DEVICE_ACTIONS,
    STOPS,
    BaseCommand,
    CommandError,
    CommandId,
    DeviceCommand,
    SessionCommand,
)

MAX_PAYLOAD = 4096  # bytes; anything longer is refused unread
RETAINED = (
    "a retained command is never obeyed: the broker would deliver it again on every "
    "reconnect, and it would run again by itself. Publish commands without the retain "
    "flag. gunctl cleared it from the broker where it was allowed to."
)


class StopAllCommand(BaseCommand):
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


def named(payload: bytes) -> tuple[CommandId | None, str | None]:
    """The id and action a refused payload gave, for its answer, where it can be read."""
    try:
        command = parse_device_command(payload).command
    except CommandError as exc:
        return exc.command_id, exc.action
    return command.id, command.action


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
