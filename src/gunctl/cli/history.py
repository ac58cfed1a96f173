"""``gunctl history``: the sessions run so far, how long each muscle was worked, how each ended."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gunctl.cli.output import emit, json_option, to_text
from gunctl.units import duration

if TYPE_CHECKING:
    from gunctl.store.diary import DiarySettings
    from gunctl.store.history import History, SessionRecord

_RELATIVE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([mhdw])\s*$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A date or time (``2025-03-01``, ``2025-03-01T18:30``), or an age (``90m``, ``48h``, ``7d``).

    A date or time without a zone is local time. Raises ValueError with a
    message a person can act on.
    """
    text = text.strip()
    match = _RELATIVE.match(text)
    if match:
        amount, unit = float(match[1]), _UNITS[match[2]]
        return (now or datetime.now().astimezone()) - timedelta(**{unit: amount})
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"{text!r} is not a date: give one such as 2025-03-01 or 2025-03-01T18:30, "
            "or an age such as 48h or 7d"
        ) from None
    return moment if moment.tzinfo is not None else moment.astimezone()


def _since(ctx: click.Context, param: click.Parameter, value: str | None) -> datetime | None:
    if value is None:
        return None
    try:
        return parse_since(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from None


since_option = click.option(
    "--since",
    metavar="DATE",
    callback=_since,
    help="Only sessions begun at or after DATE (2025-03-01, 2025-03-01T18:30) or within an age "
    "(48h, 7d).",
)
kind_option = click.option(
    "--real/--sim",
    "real",
    default=None,
    help="Only real sessions, or only simulated ones (the simulator, or a --time-scale other "
    "than 1). Both by default; simulated ones are marked [sim].",
)


def open_history(*, create: bool = False, diary: DiarySettings | None = None) -> History | None:
    """The history, or None when nothing has been recorded yet (no file is created).

    With ``create`` a missing history is created (to record in it). A history
    that cannot be written (read-only, or on a full disk) is still read. ``diary``: the diary
    rules' thresholds (by default the ``GUNCTL_DIARY_*`` variables').
    """
    from gunctl.store.history import History, HistoryError, data_folder, default_path

    path = default_path()
    data_folder(path)  # a data folder that can never hold a history is an error, not "empty"
    if not path.exists() and not create:
        return None
    try:
        return History(path, diary=diary)
    except HistoryError as exc:
        if "read-only" not in exc.what and "is full" not in exc.what:
            raise
        return History(path, read_only=True, diary=diary)


@click.group(invoke_without_command=True)
@since_option
@kind_option
@json_option
@click.pass_context
def history(ctx: click.Context, since: datetime | None, real: bool | None, as_json: bool) -> None:
    """The sessions run so far: when, what, how long on each muscle, and how each ended.

    The history lives in the user data directory; GUNCTL_DATA_DIR points
    elsewhere. Simulated sessions are kept apart: they never count toward a
    real person's 48-hour exposure or pain blocks.
    """
    if ctx.invoked_subcommand is not None:
        return
    store = open_history()
    records = [] if store is None else _read(store, since, real)
    result = [r.model_dump(mode="json") for r in records]
    emit(result, as_json, lambda _: _describe(records, since))


def _read(store: History, since: datetime | None, real: bool | None) -> list[SessionRecord]:
    with store:
        return store.sessions(since, simulated=None if real is None else not real)


@history.command("show")
@click.argument("session_id", metavar="ID", type=int)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE.png",
    help="Draw speed and force against each step's cap, temperature, and the stops "
    "(needs gunctl[plot]).",
)
@json_option
def show(session_id: int, plot: Path | None, as_json: bool) -> None:
    """One session: what it worked, how it ended, its scores, and its telemetry trace."""
    from gunctl.errors import GunctlError

    store = open_history()
    record = None if store is None else store.session(session_id)
    if store is None or record is None:
        raise GunctlError(f"there is no session {session_id}", "`gunctl history` lists them")
    with store:
        trace = store.trace(session_id)
    if plot is not None:
        from gunctl import plots

        if not trace.samples:
            raise GunctlError(
                f"session {session_id} has no telemetry trace to draw",
                "sessions recorded before gunctl kept traces have none",
            )
        plots.session(record, trace, plot)
        click.echo(f"Wrote {plot}.", err=True)
    result = {**record.model_dump(mode="json"), "trace": trace.model_dump(mode="json")}

    def render(_: Any) -> str:
        from rich.console import Group

        lines = [*describe_session(record), f"  telemetry: {len(trace.samples)} samples"]
        lines += [f"  {m.at:7.1f} s  {m.kind}: {m.label}" for m in trace.marks]
        return to_text(Group(*lines))

    emit(result, as_json, render)


@history.command("export")
@click.option(
    "--csv", "as_csv", is_flag=True, default=True, help="CSV (the only format, and the default)."
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to FILE instead of standard output.",
)
@since_option
@kind_option
def export(as_csv: bool, output: Path | None, since: datetime | None, real: bool | None) -> None:
    """Export the history as CSV: one row per session and muscle side."""
    import io

    from gunctl.store.history import CSV_COLUMNS

    buffer = io.StringIO()
    store = open_history()
    rows = 0
    if store is None:
        import csv

        csv.writer(buffer).writerow(CSV_COLUMNS)
    else:
        with store:
            rows = store.export_csv(buffer, since, simulated=None if real is None else not real)
    if output is None:
        click.echo(buffer.getvalue(), nl=False)
    else:
        output.write_text(buffer.getvalue(), encoding="utf-8", newline="")
        click.echo(f"Wrote {rows} row{'s' if rows != 1 else ''} to {output}.", err=True)


# --- for people ---------------------------------------------------------------------


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M")


def _kind(record: SessionRecord) -> str:
    if not record.simulated:
        return ""
    return " [sim]" if record.time_scale == 1 else f" [sim {record.time_scale:g}x]"


def _source(record: SessionRecord) -> str:
    """Where a session was driven from, when not ``gunctl run``: MQTT, or a Python program."""
    return "" if record.source == "cli" else f" from {record.source}"


def _totals(records: list[SessionRecord]) -> str:
    """How many sessions and how much massage, real and simulated counted apart."""
    parts = []
    for simulated, label in ((False, ""), (True, " simulated")):
        kind = [r for r in records if r.simulated == simulated]
        if kind:
            count = f"{len(kind)}{label} session{'s' if len(kind) != 1 else ''}"
            parts.append(f"{count}, {duration(sum(r.worked_s for r in kind))}")
    return "; ".join(parts) + " of massage in all."


def _ending(record: SessionRecord) -> str:
    if record.status == "running":
        return "running"
    if record.status == "completed":
        return "completed"
    return f"aborted: {record.end_reason}" if record.end_reason else "aborted"


def _describe(records: list[SessionRecord], since: datetime | None) -> str:
    if not records:
        if since is not None:
            return f"No sessions since {_when(since)}."
        return "No sessions yet. Sessions appear here once `gunctl run` has been used."
    from rich.console import Group

    blocks: list[Any] = []
    for record in records:
        blocks += describe_session(record)
    blocks += ["", _totals(records)]
    return to_text(Group(*blocks))


def describe_session(record: SessionRecord) -> list[Any]:
    """One session for people: a heading line, then time per muscle side, stops and pain.

    Worked time is motor time on the body; the plan's time also holds ramps and
    rests, so both are shown and a completed session never looks cut short.
    """
    from rich.table import Table
    from rich.text import Text

    time = f"{duration(record.worked_s)} worked"
    if record.planned_s:
        time += f" ({duration(record.planned_s)} planned, with ramps and rests)"
    ending = _ending(record)
    heading = Text.assemble(
        (_when(record.started_at), "bold"),
        (_kind(record), "cyan"),
        f"  {record.protocol} on {record.device}{_source(record)}: ",
        (ending, "red" if record.status == "aborted" else ""),
        f", {time}",
    )
    details = Table.grid(padding=(0, 2))
    details.add_column(no_wrap=True)
    details.add_column()
    for m in record.muscles:
        details.add_row(f"  {m.muscle} {m.side}", duration(m.worked_s))
    for stop in record.safety_stops:
        details.add_row(f"  stopped by {stop.rule}", stop.message)
    for pain in record.pain_reports:
        details.add_row("  pain reported", f"{pain.muscle} {pain.side}")
    for score in record.scores:
        details.add_row(f"  pain {score.moment}", score.describe())
    if record.status == "aborted" and record.end_message and not record.safety_stops:
        details.add_row("  why", record.end_message)
    return [heading, details]
