"""``gunctl specs``: the firmware specs gunctl ships, and checks for new ones."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gunctl.cli.output import EXIT_INVALID, emit, fail_invalid, json_option, to_text

if TYPE_CHECKING:
    from gunctl.specs.models import DeviceSpec, FieldSpec


@click.group()
def specs() -> None:
    """List, show and validate firmware specs (device protocols as data)."""


def _speed(spec: DeviceSpec) -> str:
    caps = spec.capabilities
    if caps.speed is not None:
        return f"{caps.speed.min_ppm}-{caps.speed.max_ppm} ppm"
    assert caps.levels_ppm is not None
    return f"{len(caps.levels_ppm)} levels ({caps.levels_ppm[0]}-{caps.levels_ppm[-1]} ppm)"


def _summary(spec: DeviceSpec) -> dict[str, Any]:
    caps = spec.capabilities
    return {
        "name": spec.name,
        "title": spec.title,
        "speed": _speed(spec),
        "keepalive": caps.keepalive.strategy.value,
        "telemetry": f"{caps.telemetry.mode.value} every {caps.telemetry.period_s:g} s",
        "trusted_fields": sorted(spec.documented_fields),
    }


@specs.command("list")
@json_option
def list_specs(as_json: bool) -> None:
    """Every firmware spec gunctl ships."""
    from gunctl.datafile import InvalidFileError
    from gunctl.specs.loader import load_specs

    try:
        rows = [_summary(s) for s in load_specs().values()]
    except InvalidFileError as exc:
        fail_invalid(exc, as_json)

    def render(rows: list[dict[str, Any]]) -> str:
        from rich.table import Table

        table = Table("spec", "device", "speed", "keepalive", "telemetry", box=None)
        for r in rows:
            table.add_row(r["name"], r["title"], r["speed"], r["keepalive"], r["telemetry"])
        return to_text(table)

    emit(rows, as_json, render)


@specs.command("show")
@click.argument("name")
@json_option
def show_spec(name: str, as_json: bool) -> None:
    """One spec in full: identity, GATT, frames, commands, reports, vectors."""
    from gunctl.datafile import InvalidFileError
    from gunctl.specs.loader import get_spec

    try:
        spec = get_spec(name)
    except InvalidFileError as exc:
        fail_invalid(exc, as_json)
    except KeyError as exc:
        click.echo(f"gunctl: {exc.args[0]}", err=True)
        sys.exit(EXIT_INVALID)
    emit(spec.model_dump(mode="json"), as_json, lambda _: _describe(spec))


@specs.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@json_option
def validate_specs(files: tuple[Path, ...], as_json: bool) -> None:
    """Check spec files (the shipped ones when none are given); exit 2 on any problem."""
    from gunctl.datafile import InvalidFileError
    from gunctl.specs.loader import load_specs, spec_files

    paths = list(files) or spec_files()
    try:
        specs_ = load_specs(paths)
    except InvalidFileError as exc:
        fail_invalid(exc, as_json)
    result = {"ok": True, "files": [str(p) for p in paths], "specs": sorted(specs_)}
    emit(result, as_json, lambda r: "\n".join(f"{f}: ok" for f in r["files"]))


def _unit(field: FieldSpec) -> str:
    for suffix, unit in (("_ppm", "ppm"), ("_a", "A"), ("_n", "N"), ("_c", "°C"), ("_pct", "%")):
        if field.name.endswith(suffix):
            return unit
    return ""


def _describe(spec: DeviceSpec) -> str:
    from rich.console import Group
    from rich.table import Table

    ident = spec.identity
    head = Table.grid(padding=(0, 2))
    head.add_row("spec", f"[bold]{spec.name}[/] - {spec.title}")
    head.add_row("source", spec.source)
    head.add_row("names", ", ".join(ident.names) or "-")
    head.add_row("services", ", ".join(ident.services) or "-")
    head.add_row("command / telemetry", f"{spec.gatt.command} / {spec.gatt.telemetry}")
    if spec.gatt.battery:
        head.add_row("battery", "standard Battery Service (0x180F / 0x2A19)")
    head.add_row("speed", _speed(spec))
    caps = spec.capabilities
    keepalive = caps.keepalive
    head.add_row(
        "keepalive",
        keepalive.strategy.value
        + (
            f" every {keepalive.period_s:g} s, firmware stops after {keepalive.timeout_s:g} s"
            if keepalive.period_s
            else ""
        ),
    )
    head.add_row("telemetry", f"{caps.telemetry.mode.value} every {caps.telemetry.period_s:g} s")
    for label, value in (
        ("auto-off", caps.auto_off_s and f"{caps.auto_off_s:g} s"),
        ("thermal cutoff", caps.temperature_limit_c and f"{caps.temperature_limit_c:g} °C"),
        ("stall force", caps.stall_force_n and f"{caps.stall_force_n:g} N"),
        ("detects heads", ", ".join(caps.heads)),
    ):
        head.add_row(label, str(value or "-"))

    messages = Table("direction", "message", "opcode", "fields", title="frames", box=None)
    for direction, section in (("host", spec.commands), ("device", spec.reports)):
        for kind, message in section.items():
            fields = ", ".join(
                f"{f.name}={f.const}"
                if f.const is not None
                else f"{f.name}:{f.type.value}{' ' + _unit(f) if _unit(f) else ''}"
                + ("" if f.documented else " (undocumented)")
                for f in message.fields
            )
            messages.add_row(direction, kind.value, f"0x{message.opcode:02X}", fields or "-")

    vectors = Table("direction", "bytes", "meaning", title="golden vectors", box=None)
    for v in spec.vectors:
        meaning = ", ".join(f"{k}={val}" for k, val in v.message.items() if k != "undocumented")
        vectors.add_row(v.direction.value, v.hex.upper(), meaning)
    return to_text(Group(head, messages, vectors))
