"""One place that prints a command's result, as text for people or JSON for scripts."""

from __future__ import annotations

import io
import json
import shutil
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import click

from gunctl.datafile import InvalidFileError, Problem
from gunctl.errors import EXIT_INVALID, EXIT_OK, EXIT_UNREACHABLE

__all__ = ["EXIT_INVALID", "EXIT_OK", "EXIT_UNREACHABLE"]  # the codes live in gunctl.errors

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
# the [diary] table of gunctl serve's file: every command refuses on the same thresholds
diary_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    allow_from_autoenv=False,
    help="A gunctl serve TOML file; its [diary] table sets the diary rules (docs/diary.md).",
)


def emit(result: Any, as_json: bool, render: Callable[[Any], str]) -> None:
    """Print ``result``: ``render(result)`` for people, or ``result`` as JSON."""
    if as_json:
        click.echo(json.dumps(result, indent=2, default=str))
    else:
        click.echo(render(result))


def to_text(renderable: Any) -> str:
    """Render a rich table or group to plain text that fits the terminal."""
    from rich.console import Console

    buffer = io.StringIO()
    width = shutil.get_terminal_size((100, 24)).columns
    Console(file=buffer, width=width, highlight=False, emoji=False).print(renderable)
    return buffer.getvalue().rstrip()


def report_problems(problems: Sequence[Problem], as_json: bool) -> None:
    """Print every problem as ``FILE:LINE: FIELD: message`` on stderr (JSON on stdout)."""
    if as_json:
        click.echo(json.dumps({"ok": False, "problems": [p.as_dict() for p in problems]}, indent=2))
    for problem in problems:
        click.echo(str(problem), err=True)


def warn_problems(problems: Sequence[Problem]) -> None:
    """Report the files a partial catalogue left out, while everything else works."""
    if problems:
        click.echo(
            "gunctl: warning: left out of your profiles (everything else works) — fix these "
            "lines (`gunctl profiles validate` checks them):",
            err=True,
        )
        for problem in problems:
            click.echo(f"  {problem}", err=True)


def fail_invalid(error: InvalidFileError, as_json: bool) -> NoReturn:
    report_problems(error.problems, as_json)
    sys.exit(EXIT_INVALID)
