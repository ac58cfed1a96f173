"""``gunctl profiles``: the muscles, their envelope, and the protocols that treat them."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gunctl.cli.output import EXIT_INVALID, emit, fail_invalid, json_option, to_text
from gunctl.units import duration

if TYPE_CHECKING:
    from gunctl.profiles.loader import Catalogue
    from gunctl.profiles.models import Muscle, Protocol

from gunctl.redflags import STOP_RULE

_META_KEY = "gunctl.profiles_dir"

NOT_ADVICE = (
    "gunctl is not medical advice. See a professional if pain is severe or getting worse, "
    "or comes with numbness, weakness, or trouble with bladder or bowel."
)
MOVE_RULE = "If a point has not eased after about 30 s, move the head a little."


def _keep_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.meta[_META_KEY] = value


# Accepted before the subcommand and after it: `gunctl profiles list --profiles DIR`.
profiles_option = click.option(
    "--profiles",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    envvar="GUNCTL_PROFILES",
    expose_value=False,
    callback=_keep_dir,
    help="A folder of your own profiles (muscles.yaml, protocols/*.yaml) "
    "that override the shipped ones by name [GUNCTL_PROFILES].",
)


@click.group()
@profiles_option
def profiles() -> None:
    """List, show and validate muscles and treatment protocols."""


def _user_dir() -> Path | None:
    value = click.get_current_context().meta.get(_META_KEY)
    return value if isinstance(value, Path) else None


def _catalogue(as_json: bool, *, partial: bool = True) -> Catalogue:
    """The catalogue; a broken file of yours is reported and left out (``partial``)."""
    from gunctl.cli.output import warn_problems
    from gunctl.datafile import InvalidFileError
    from gunctl.profiles.loader import load_catalogue

    try:
        catalogue = load_catalogue(_user_dir(), partial=partial)
    except InvalidFileError as exc:
        fail_invalid(exc, as_json)
        raise  # not reached: fail_invalid exits
    warn_problems(catalogue.problems)
    return catalogue


def _percent(fraction: float) -> str:
    return f"{round(fraction * 100)}%"


# --- list -------------------------------------------------------------------------


@profiles.command("list")
@profiles_option
@json_option
def list_profiles(as_json: bool) -> None:
    """Every protocol and every muscle, shipped and your own (marked "yours")."""
    from gunctl.resources import shipped

    catalogue = _catalogue(as_json)
    ours = shipped("profiles")
    result = {
        "protocols": [
            {
                "name": p.name,
                "title": p.title,
                "steps": len(p.steps),
                "total_s": p.total_s(),
                "source": str(catalogue.protocol_sources[p.name]),
                "yours": not catalogue.protocol_sources[p.name].is_relative_to(ours),
            }
            for p in catalogue.protocols.values()
        ],
        "muscles": [_muscle_summary(name, m) for name, m in catalogue.muscles.items()],
    }

    def render(result: dict[str, Any]) -> str:
        from rich.console import Group
        from rich.table import Table

        protocols = Table("protocol", "title", "steps", "time", "", title="Protocols", box=None)
        for p in result["protocols"]:
            mine = "yours" if p["yours"] else ""
            protocols.add_row(p["name"], p["title"], str(p["steps"]), duration(p["total_s"]), mine)
        muscles = Table(
            "muscle", "name", "region", "cap", "hold", "per session", title="Muscles", box=None
        )
        for m in result["muscles"]:
            if not m["reachable"]:
                muscles.add_row(m["id"], m["name"], m["region"], "-", "-", "not reachable")
                continue
            hold = m["hold_s"]
            muscles.add_row(
                m["id"],
                m["name"],
                m["region"],
                _percent(m["intensity_cap"]),
                f"{hold['min']:g}-{hold['max']:g} s",
                duration(m["session_s_max"]) + " a side",
            )
        hint = "Show one with `gunctl profiles show NAME`."
        return to_text(Group(protocols, "", muscles, "", hint))

    emit(result, as_json, render)


def _muscle_summary(name: str, muscle: Muscle) -> dict[str, Any]:
    return {
        "id": name,
        "name": muscle.name,
        "region": muscle.region,
        "depth": muscle.depth.value,
        "reachable": muscle.reachable,
        "near_sciatic_nerve": muscle.near_sciatic_nerve,
        "intensity_cap": muscle.intensity_cap,
        "hold_s": muscle.hold_s.model_dump() if muscle.hold_s else None,
        "session_s_max": muscle.session_s_max,
        "per_48h_s_max": muscle.per_48h_s_max,
        "pulsing_allowed": muscle.pulsing_allowed,
    }


# --- show -------------------------------------------------------------------------


@profiles.command("show")
@click.argument("name")
@profiles_option
@click.option(
    "--muscle",
    "as_muscle",
    is_flag=True,
    help="Show the muscle called NAME even when a protocol has the same name.",
)
@json_option
def show_profile(name: str, as_muscle: bool, as_json: bool) -> None:
    """A protocol step by step, or a muscle's safety envelope."""
    from gunctl.datafile import suggest

    catalogue = _catalogue(as_json)
    source = None
    if name in catalogue.protocols and not as_muscle:
        protocol = catalogue.protocols[name]
        source = catalogue.protocol_sources[name]
        result = {
            "kind": "protocol",
            "source": str(source),
            **protocol.model_dump(mode="json"),
            "total_s": protocol.total_s(),
            "per_side_s": {"left": protocol.total_s("left"), "right": protocol.total_s("right")},
        }
        emit(result, as_json, lambda _: _describe_protocol(protocol, catalogue))
        return
    if name in catalogue.muscles:
        muscle = catalogue.muscles[name]
        source = catalogue.muscle_sources[name]
        result = {
            "kind": "muscle",
            "id": name,
            "source": str(source),
            **muscle.model_dump(mode="json"),
        }
        emit(result, as_json, lambda _: _describe_muscle(name, muscle))
        return

    known = list(catalogue.muscles) if as_muscle else [*catalogue.protocols, *catalogue.muscles]
    what = "muscle" if as_muscle else "protocol or muscle"
    message = f"no {what} named {name!r}{suggest(name, known)}; `gunctl profiles list` shows them"
    if as_json:
        click.echo(f'{{"ok": false, "error": {_json_str(message)}}}')
    click.echo(f"gunctl: {message}", err=True)
    sys.exit(EXIT_INVALID)


def _json_str(text: str) -> str:
    import json

    return json.dumps(text)


def _bullets(lines: list[str]) -> Any:
    """A list with a hanging indent, so wrapped lines stay under their text."""
    from rich.table import Table

    grid = Table.grid(padding=(0, 1))
    for line in lines:
        grid.add_row("-", line)
    return grid


def _describe_protocol(protocol: Protocol, catalogue: Catalogue) -> str:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = Text.assemble((protocol.title, "bold"), f"  ({protocol.name})")
    steps = Table(
        "#", "muscle", "side", "head", "intensity", "hold", "ramp", "rest", "where", box=None
    )
    steps.columns[-1].ratio = 1
    for i, step in enumerate(protocol.steps, start=1):
        muscle = catalogue.muscles[step.muscle]
        steps.add_row(
            str(i),
            muscle.name,
            step.side.value,
            step.head.value + (" (pulsing)" if step.pulsing else ""),
            _percent(step.intensity),
            f"{step.hold_s:g} s",
            f"{step.ramp_s:g} s",
            f"{step.rest_s:g} s",
            step.placement,
        )

    total = protocol.total_s()
    left, right = protocol.total_s("left"), protocol.total_s("right")
    per_side = (
        f"{duration(left)} a side"
        if left == right
        else (f"{duration(left)} left, {duration(right)} right")
    )
    heads = ", ".join(h.value for h in protocol.heads)
    facts = Table.grid(padding=(0, 2))
    facts.add_row("Sides", "'both' means the left side, then the right, before the next point")
    facts.add_row("Time", f"{duration(total)} in all ({per_side}), ramps and rests included")
    facts.add_row("Heads", f"{heads}; the gun stops and waits for you at each head change")
    facts.add_row(
        "Intensity", "a share of what your gun can do; it never goes above a muscle's cap"
    )

    notes: list[str] = []
    for name in dict.fromkeys(step.muscle for step in protocol.steps):
        muscle = catalogue.muscles[name]
        if muscle.near_sciatic_nerve:
            notes.append(f"{muscle.name}: lies close to the sciatic nerve; always worked gently.")
    notes += [STOP_RULE, MOVE_RULE]
    careful = _bullets(notes)
    return to_text(
        Group(
            title,
            Text(protocol.description),
            "",
            steps,
            "",
            facts,
            "",
            careful,
            "",
            Text(NOT_ADVICE, style="italic"),
        )
    )


def _describe_muscle(name: str, muscle: Muscle) -> str:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    title = Text.assemble((muscle.name, "bold"), f"  ({name})")
    grid = Table.grid(padding=(0, 2))
    grid.add_row("region", f"{muscle.region}, {muscle.depth.value}")
    if muscle.near_sciatic_nerve:
        grid.add_row("nerve", "lies near the sciatic nerve: kept gentle, never pulsing")
    if not muscle.reachable:
        grid.add_row("reachable", "no: a massage gun cannot reach it, so no protocol may use it")
    else:
        heads = muscle.heads
        also = [h.value for h in heads.allowed if h not in heads.recommended]
        grid.add_row(
            "heads",
            ", ".join(h.value for h in heads.recommended)
            + (f" (also allowed: {', '.join(also)})" if also else ""),
        )
        if heads.forbidden:
            grid.add_row("never", ", ".join(h.value for h in heads.forbidden))
        grid.add_row("intensity cap", _percent(muscle.intensity_cap))
        if muscle.hold_s is not None:
            hold = muscle.hold_s
            grid.add_row("hold", f"{hold.min:g} to {hold.max:g} s on one point")
        grid.add_row("per session", f"{duration(muscle.session_s_max)} a side at most")
        grid.add_row("per 48 hours", f"{duration(muscle.per_48h_s_max)} a side at most")
        grid.add_row("pulsing", "allowed" if muscle.pulsing_allowed else "never")
    grid.add_row("where", muscle.placement)
    cautions = _bullets(list(muscle.cautions))
    return to_text(Group(title, grid, "", cautions, "", Text(NOT_ADVICE, style="italic")))


# --- validate ---------------------------------------------------------------------


@profiles.command("validate")
@click.argument("files", nargs=-1, type=click.Path(path_type=Path, dir_okay=False))
@profiles_option
@json_option
def validate_profiles(files: tuple[Path, ...], as_json: bool) -> None:
    """Check profile files (all shipped and your own when none are given); exit 2 on any problem.

    A file with a top-level `muscles:` key is a muscle catalogue; any other file
    is a protocol, checked against the muscles in effect.
    """
    from gunctl.cli.output import report_problems
    from gunctl.profiles.loader import validate_files

    if files:
        problems = validate_files(files, _user_dir())
        if problems:
            report_problems(problems, as_json)
            sys.exit(EXIT_INVALID)
        result: dict[str, Any] = {"ok": True, "files": [str(f) for f in files]}
    else:
        catalogue = _catalogue(as_json, partial=False)
        sources = {*catalogue.muscle_sources.values(), *catalogue.protocol_sources.values()}
        result = {
            "ok": True,
            "files": sorted(str(s) for s in sources),
            "muscles": len(catalogue.muscles),
            "protocols": len(catalogue.protocols),
        }
    emit(result, as_json, lambda r: "\n".join(f"{f}: ok" for f in r["files"]))
