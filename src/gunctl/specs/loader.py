"""Reading firmware spec files, with every problem reported against its line.

Beyond the schema, a spec is checked for what only makes sense as a whole:
field names that the typed messages know, golden vectors whose bytes mean
exactly what they say, in both directions, and every command the controller
may send, at both ends of its setpoint range, encoding (so a spec that cannot
carry them is refused here, never met as an EncodeError mid-session).

Your own specs live in the folder named by ``GUNCTL_SPECS``, like your
profiles: a file there replaces the shipped spec with the same name, and a
broken one is reported and left out without blocking the others.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import structlog
from pydantic import ValidationError

from gunctl.datafile import Document, InvalidFileError, Problem, Stamp, stamp, suggest
from gunctl.errors import GunctlError, UnknownNameError
from gunctl.resources import shipped
from gunctl.specs.codec import Codec, DecodeError, EncodeError
from gunctl.specs.messages import (
    COMMAND_ADAPTER,
    REPORT_ADAPTER,
    STATUS_ATTRIBUTES,
    VALUELESS,
    Command,
    SetLevel,
    SetSpeed,
)
from gunctl.specs.models import CommandKind, DeviceSpec, Direction, ReportKind, hex_to_bytes

log = structlog.get_logger("gunctl.specs")

# The attributes each message kind carries; any other field must be a `const`.
_ATTRIBUTES: dict[str, set[str]] = {
    CommandKind.SET_SPEED: {"ppm"},
    CommandKind.SET_LEVEL: {"level"},
    ReportKind.STATUS: STATUS_ATTRIBUTES,
    ReportKind.VERSION: {"version"},
}


ENV_VAR = "GUNCTL_SPECS"


def spec_dir() -> Path:
    return shipped("firmware_specs")


def user_spec_dir() -> Path | None:
    """The folder of your own specs (``GUNCTL_SPECS``), or None."""
    folder = os.environ.get(ENV_VAR)
    if not folder:
        return None
    path = Path(folder)
    if not path.is_dir():
        raise GunctlError(
            f"the specs folder {path} does not exist",
            f"point {ENV_VAR} at a folder of spec files (NAME.yaml), or unset it",
        )
    return path


def spec_files(directory: Path | None = None) -> list[Path]:
    """The spec files of ``directory``; by default the shipped ones, yours over them by name."""
    if directory is not None:
        return sorted(directory.glob("*.yaml"))
    files = {p.stem: p for p in spec_dir().glob("*.yaml")}
    user = user_spec_dir()
    if user is not None:
        files.update({p.stem: p for p in user.glob("*.yaml")})
    return [files[name] for name in sorted(files)]


def load_spec(path: Path) -> DeviceSpec:
    """Load and fully check one spec file; raises InvalidFileError with every problem."""
    doc = Document.read(path)
    spec = doc.validate(DeviceSpec)
    problems = list(_check(doc, spec))
    if spec.name != path.stem:
        problems.append(doc.problem(("name",), f"must match the file name {path.stem!r}"))
    if problems:
        raise InvalidFileError(problems)
    return spec


_loaded: tuple[tuple[Path | None, Stamp], dict[str, DeviceSpec]] | None = None


def load_specs(paths: Iterable[Path] | None = None) -> dict[str, DeviceSpec]:
    """Every spec by name; all problems across all files are raised together.

    By default (``paths`` None), the shipped specs with yours over them. These
    are parsed once and kept, since the daemon asks for them on every reconnect,
    beside guns whose control loops must not wait for a disk: the shipped ones
    for the life of the process (they are part of the installed package), yours
    until one of your files changes.
    """
    global _loaded
    if paths is not None:
        return _parse(paths, yours_left_out=False)
    user = user_spec_dir()
    key = (user, stamp([user, *spec_files(user)]) if user is not None else ())
    if _loaded is None or _loaded[0] != key:
        _loaded = (key, _parse(spec_files(), yours_left_out=True))
    return dict(_loaded[1])


def _parse(paths: Iterable[Path], *, yours_left_out: bool) -> dict[str, DeviceSpec]:
    specs: dict[str, DeviceSpec] = {}
    problems: list[Problem] = []
    for path in paths:
        try:
            spec = load_spec(path)
        except InvalidFileError as exc:
            if yours_left_out and not path.is_relative_to(spec_dir()):
                # a broken file of yours is named and left out; the rest still works
                log.warning("spec_left_out", problems=[str(p) for p in exc.problems])
                continue
            problems.extend(exc.problems)
            continue
        specs[spec.name] = spec
    if problems:
        raise InvalidFileError(problems)
    return specs


def get_spec(name: str) -> DeviceSpec:
    specs = load_specs()
    if name not in specs:
        raise UnknownNameError(
            f"no firmware spec named {name!r}{suggest(name, specs)}",
            "`gunctl specs list` shows them",
        )
    return specs[name]


def find_spec(ref: str) -> DeviceSpec:
    """A spec file by path (``*.yaml``), or a shipped spec by name.

    Raises InvalidFileError for a broken file, UnknownNameError for an unknown name.
    """
    if ref.endswith((".yaml", ".yml")):
        return load_spec(Path(ref))
    return get_spec(ref)


def _check(doc: Document, spec: DeviceSpec) -> Iterable[Problem]:
    for section, messages in (("commands", spec.commands), ("reports", spec.reports)):
        for kind, message in messages.items():
            known = _ATTRIBUTES.get(kind, set())
            for i, field in enumerate(message.fields):
                if field.const is None and field.documented and field.name not in known:
                    loc = (section, kind.value, "fields", i, "name")
                    hint = suggest(field.name, known) if known else " (this message has no values)"
                    yield doc.problem(loc, f"{kind.value} has no field {field.name!r}{hint}")
    codec = Codec(spec)
    for i, vector in enumerate(spec.vectors):
        yield from _check_vector(doc, codec, i, vector.direction, vector.hex, vector.message)
    yield from _check_sendable(doc, codec, spec)


def _sendable(spec: DeviceSpec) -> Iterable[Command]:
    """Every command the controller may send this gun, its setpoint at both ends of the range."""
    caps = spec.capabilities
    if caps.speed is not None:
        yield from (SetSpeed(ppm=caps.speed.min_ppm), SetSpeed(ppm=caps.speed.max_ppm))
    if caps.levels_ppm is not None:
        yield from (SetLevel(level=1), SetLevel(level=len(caps.levels_ppm)))
    yield from (command for command in VALUELESS if command.kind in spec.commands)


def _check_sendable(doc: Document, codec: Codec, spec: DeviceSpec) -> Iterable[Problem]:
    """A field too narrow for a setpoint the capabilities allow is found here, not mid-session.

    Without this check a spec whose ``ppm`` is a u8 under a 3,000 ppm range
    would load, and its first write would end the gun's controller.
    """
    for command in _sendable(spec):
        try:
            codec.encode_command(command)
        except EncodeError as exc:
            said = ", ".join(f"{k}={v}" for k, v in command.model_dump(exclude={"kind"}).items())
            yield doc.problem(
                ("commands", command.kind, "fields"),
                f"cannot carry {command.kind}{f' {said}' if said else ''}, "
                f"which the capabilities allow: {exc}",
            )


def _check_vector(
    doc: Document, codec: Codec, i: int, direction: Direction, text: str, meaning: dict[str, Any]
) -> Iterable[Problem]:
    adapter: Any = COMMAND_ADAPTER if direction is Direction.HOST else REPORT_ADAPTER
    try:
        message = adapter.validate_python(meaning)
    except ValidationError as exc:
        yield doc.problem(("vectors", i, "message"), exc.errors()[0]["msg"])
        return
    data = hex_to_bytes(text)
    host = direction is Direction.HOST
    try:
        encoded = codec.encode_command(message) if host else codec.encode_report(message)
        decoded = codec.decode_command(data) if host else codec.decode_report(data)
    except (DecodeError, EncodeError) as exc:
        yield doc.problem(("vectors", i, "hex"), str(exc))
        return
    if encoded != data:
        yield doc.problem(
            ("vectors", i, "hex"),
            f"the message encodes to {encoded.hex(' ').upper()}, not {data.hex(' ').upper()}",
        )
    elif decoded != message:
        yield doc.problem(
            ("vectors", i, "message"),
            f"the bytes decode to {decoded.model_dump(exclude_defaults=True)}",
        )
