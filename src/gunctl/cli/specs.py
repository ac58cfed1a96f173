"""``gunctl specs``: the firmware specs gunctl ships, and checks for new ones."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gunctl.cli.output import EXIT_INVALID, emit, fail_invalid, json_option, to_text
from gunctl.errors import UnknownNameError

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
    """Every firmware spec: the shipped ones, and yours from the GUNCTL_SPECS folder."""
    from gunctl.datafile import InvalidFileError
    from gunctl.specs.loader import load_specs, spec_dir, spec_files

    yours = {p.stem for p in spec_files() if not p.is_relative_to(spec_dir())}
    try:
        rows = [{**_summary(s), "yours": s.name in yours} for s in load_specs().values()]
    except InvalidFileError as exc:
        fail_invalid(exc, as_json)

    def render(rows: list[dict[str, Any]]) -> str:
        from rich.table import Table

        table = Table("spec", "device", "speed", "keepalive", "telemetry", "", box=None)
        for r in rows:
            mine = "yours" if r["yours"] else ""
            table.add_row(r["name"], r["title"], r["speed"], r["keepalive"], r["telemetry"], mine)
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
    except UnknownNameError as exc:
        click.echo(f"gunctl: {exc}", err=True)
        sys.exit(EXIT_INVALID)
    emit(spec.model_dump(mode="json"), as_json, lambda _: _describe(spec))


@specs.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@json_option
def validate_specs(files: tuple[Path, ...], as_json: bool) -> None:
    """Check spec files (the shipped ones and yours when none are given); exit 2 on any problem."""
    from gunctl.datafile import InvalidFileError
    from gunctl.specs.loader import load_specs, spec_files

    paths = list(files) or spec_files()
    try:
        specs_ = load_specs(paths)
    except InvalidFileError as exc:
        fail_invalid(exc, as_json)
    result = {"ok": True, "files": [str(p) for p in paths], "specs": sorted(specs_)}
    emit(result, as_json, lambda r: "\n".join(f"{f}: ok" for f in r["files"]))


@specs.command("draft")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--output", "-o", type=click.Path(path_type=Path, dir_okay=False), help="Write the YAML here."
)
@click.option("--name", help="The family's name (default: the output file's name, or draft).")
@click.option(
    "--mark",
    "marks",
    multiple=True,
    metavar="T=WHAT",
    help="What you did at T seconds into the capture: 12.5=speed:2400, 20=level:3, 31=stop.",
)
@json_option
def draft_spec(
    file: Path, output: Path | None, name: str | None, marks: tuple[str, ...], as_json: bool
) -> None:
    """Draft a spec from a capture (FILE): layout, checksum, frame kinds, golden vectors.

    Exits 1 when the capture's frames cannot be laid out (no constant header:
    encrypted or rolling-code frames look like this).
    """
    from gunctl.capture import Capture
    from gunctl.capture.draft import Mark, check_file, draft_spec
    from gunctl.capture.frames import gather
    from gunctl.capture.specfile import render
    from gunctl.cli.capture import cut_note, records_or_fail

    try:
        parsed = [Mark.parse(m) for m in marks]
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--mark") from exc
    family = _family_name(name or (output.stem if output else "draft"))
    source = Capture(file)
    frames = gather(records_or_fail(source), source.reader)
    draft = draft_spec(frames, family, file.name, parsed)
    if source.reader.cut:
        draft.warnings.append(cut_note(source.reader.cut))
    text = render(draft) if draft.spec is not None else None
    problems = check_file(family, text) if text is not None else []
    if text is not None and output is not None:
        try:
            output.write_text(text, encoding="utf-8")
        except OSError as exc:
            click.echo(f"gunctl: cannot write {output}: {exc.strerror or exc}", err=True)
            sys.exit(EXIT_INVALID)
    result = {**draft.as_json(), "problems": problems, "output": str(output) if output else None}
    if as_json:
        emit({**result, "yaml": text if output is None else None}, True, str)
    else:
        for line in draft.findings:
            click.echo(f"found: {line}", err=True)
        for line in draft.warnings + problems:
            click.echo(f"note: {line}", err=True)
        if text is not None and output is None:
            click.echo(text, nl=False)
        elif text is not None:
            click.echo(
                f"{output}: drafted; check it with `gunctl specs validate {output}`", err=True
            )
    if text is None or problems:
        sys.exit(1)


@specs.command("check")
@click.argument("spec_ref", metavar="SPEC")
@click.option(
    "--capture",
    "capture_file",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    help="A btsnoop or btmon capture of the device.",
)
@json_option
def check_spec(spec_ref: str, capture_file: Path, as_json: bool) -> None:
    """Replay every frame of a capture through SPEC (a name or a file), both ways.

    Exits 1 when a frame the spec claims (its header, an opcode it knows) does
    not decode or does not encode back to the same bytes, or when no frame of
    the capture is the spec's.
    """
    from gunctl.capture import Capture
    from gunctl.capture.replay import replay
    from gunctl.cli.capture import records_or_fail

    spec = _load_one(spec_ref, as_json)
    coverage = replay(spec, records_or_fail(Capture(capture_file)))
    emit(coverage.as_json(), as_json, _coverage_text)
    if not coverage.ok:
        sys.exit(1)


def _load_one(ref: str, as_json: bool) -> DeviceSpec:
    """A spec by file path (``*.yaml``) or by the name of a shipped one."""
    from gunctl.datafile import InvalidFileError
    from gunctl.specs.loader import find_spec

    try:
        return find_spec(ref)
    except InvalidFileError as exc:
        fail_invalid(exc, as_json)
    except UnknownNameError as exc:
        click.echo(f"gunctl: {exc}", err=True)
        sys.exit(EXIT_INVALID)


def _coverage_text(result: dict[str, Any]) -> str:
    from rich.console import Group
    from rich.table import Table

    table = Table(
        "direction", "decoded as", "frames", title=f"{result['spec']}: coverage", box=None
    )
    for direction, kinds in result["kinds"].items():
        for kind, n in kinds.items():
            table.add_row(direction, kind, str(n))
    lines: list[Any] = [table]
    for direction, outcomes in result["outcomes"].items():
        shown = ", ".join(f"{n} {outcome}" for outcome, n in outcomes.items())
        lines.append(f"{direction}: {shown}")
    for direction, reasons in result["refused"].items():
        for reason, n in reasons.items():
            lines.append(f"[red]refused[/]: {n} {direction} frames, {reason}")
    for example in result["examples"]:
        lines.append(f"  at {example['t']:.3f} s: {example['value']} ({example['reason']})")
    for direction, opcodes in result["unknown_opcodes"].items():
        for opcode, n in opcodes.items():
            lines.append(f"unknown kind: {n} {direction} frames with opcode {opcode}")
    if not result["outcomes"]:
        lines.append("no write or notification of the capture is on this spec's characteristics")
    elif result["unseen_kinds"]:
        lines.append("not in the capture: " + ", ".join(result["unseen_kinds"]))
    lines.append("ok" if result["ok"] else "[red]FAILED[/]: the spec does not explain this capture")
    return to_text(Group(*lines))


def _family_name(text: str) -> str:
    """A spec name (lowercase letters, digits, dashes) made from ``text``."""
    import re

    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return name or "draft"


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
