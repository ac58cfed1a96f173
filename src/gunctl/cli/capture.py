"""``gunctl capture``: what a Bluetooth capture holds, as ATT traffic."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from gunctl.cli.output import EXIT_INVALID, json_option, to_text

if TYPE_CHECKING:
    from gunctl.capture import AttRecord, Capture
    from gunctl.capture.summary import Summary

capture_file = click.argument("file", type=click.Path(path_type=Path, dir_okay=False))


@click.group()
def capture() -> None:
    """Read Android btsnoop and Linux btmon captures."""


def fail_capture(path: Path, error: Exception) -> NoReturn:
    """A capture that cannot be read: one line naming the file (and offset), exit 2."""
    from gunctl.capture import CaptureError

    reason = str(error) if isinstance(error, CaptureError) else _os_reason(error)
    click.echo(f"gunctl: {path}: {reason}", err=True)
    sys.exit(EXIT_INVALID)


def _os_reason(error: Exception) -> str:
    return error.strerror if isinstance(error, OSError) and error.strerror else str(error)


def records_or_fail(capture: Capture) -> Iterator[AttRecord]:
    """The capture's records; a read error ends the command with a one-line message."""
    from gunctl.capture import CaptureError

    try:
        yield from capture.records()
    except (CaptureError, OSError) as exc:
        fail_capture(capture.path, exc)


@capture.command("show")
@capture_file
@click.option("--summary", "summary_only", is_flag=True, help="Only the per-characteristic table.")
@json_option
def show(file: Path, summary_only: bool, as_json: bool) -> None:
    """List every ATT write, notification and indication in FILE, then a summary table.

    With --json, one JSON object per line for each record, then one with the summary.
    """
    from gunctl.capture import Capture
    from gunctl.capture.summary import Summary

    source = Capture(file)
    summary = Summary()
    for record in records_or_fail(source):
        summary.add(record)
        if summary_only:
            continue
        if as_json:
            click.echo(json.dumps(record.as_json()))
        else:
            click.echo(_line(record))
    cut = source.reader.cut
    if as_json:
        rows = [r.as_json() for r in summary.rows]
        click.echo(json.dumps({"summary": rows, "records": summary.count, "cut": cut}))
    else:
        click.echo(_table(summary))
    if cut:
        click.echo(f"gunctl: {cut_note(cut)}", err=True)


def cut_note(count: int) -> str:
    return (
        f"{count} ATT frames were cut short by the capture itself and are left out: a filtered "
        "snoop log keeps only the start of each packet; choose the full log in the phone's "
        "developer options"
    )


def _line(record: AttRecord) -> str:
    uuid = record.uuid or "-"
    return (
        f"{record.t:11.6f}  conn {record.connection:<4} {record.direction.value:<6} "
        f"{record.op.value:<9} 0x{record.handle:04x} {uuid:<36}  {record.value.hex(' ')}"
    )


def _table(summary: Summary) -> str:
    from rich.table import Table

    table = Table(
        "conn", "handle", "uuid", "way", "ops", "count", "lengths", "constant start",
        title=f"{summary.count} ATT records", box=None,
    )  # fmt: skip
    for row in summary.rows:
        data = row.as_json()
        lengths = data["lengths"]
        shown = (
            ",".join(map(str, lengths))
            if isinstance(lengths, list)
            else f"{row.shortest}-{row.longest}"
        )
        table.add_row(
            str(row.connection),
            f"0x{row.handle:04x}",
            row.uuid or "-",
            row.direction,
            ",".join(sorted(op.value for op in row.ops)),
            str(row.count),
            shown,
            row.prefix.hex(" ") or "-",
        )
    return to_text(table)
