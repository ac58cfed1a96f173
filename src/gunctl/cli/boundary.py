"""The one error boundary of ``gunctl`` and ``gunsim``: no traceback reaches a person.

``Bounded`` is a click group whose ``main`` runs the command and turns every
expected failure into ``PROG: what went wrong — what to do next`` on stderr
with an exit code from :data:`gunctl.errors.EXIT_CODES`. A failure nobody
expected is a bug: one line that says so and how to report it, exit 1, and
the traceback only with ``GUNCTL_DEBUG=1``.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

import click

from gunctl.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_SAFETY,
    EXIT_STORAGE,
    EXIT_UNREACHABLE,
    GunctlError,
    LinkError,
    SafetyStopError,
    StorageError,
)

DEBUG_ENV = "GUNCTL_DEBUG"

# The one table from gunctl's errors to the command line's exit codes: the first
# class an error is an instance of gives its code.
EXIT_FOR: tuple[tuple[type[GunctlError], int], ...] = (
    (SafetyStopError, EXIT_SAFETY),
    (LinkError, EXIT_UNREACHABLE),
    (StorageError, EXIT_STORAGE),
    (GunctlError, EXIT_INVALID),
)


def exit_code_for(exc: GunctlError) -> int:
    """The exit code for one of gunctl's errors, from :data:`EXIT_FOR`."""
    return next(code for kind, code in EXIT_FOR if isinstance(exc, kind))


_OS_ADVICE = {
    errno.ENOENT: "check the path: the file or folder is not there",
    errno.ENOTDIR: "a part of this path is a file, not a folder: choose another path",
    errno.EISDIR: "this is a folder: give a file",
    errno.EACCES: "you may not use it: fix its permissions or choose another path",
    errno.EPERM: "you may not use it: fix its permissions or choose another path",
    errno.EROFS: "it is on a read-only file system: choose a path you can write to",
    errno.ENOSPC: "the disk is full: free some space",
    errno.EDQUOT: "your disk quota is used up: free some space",
}


def explain(exc: BaseException) -> tuple[str, int] | None:
    """The line to print and the exit code for an expected failure; None for a bug."""
    from gunctl.datafile import InvalidFileError

    if isinstance(exc, InvalidFileError):  # one line per problem, not one long line
        lines = "\n  ".join(str(p) for p in exc.problems)
        return f"invalid file:\n  {lines}\n— fix the lines above and try again", EXIT_INVALID
    if isinstance(exc, GunctlError):
        return str(exc), exit_code_for(exc)
    if isinstance(exc, sqlite3.Error):
        from gunctl.store.history import default_path, unusable

        return str(unusable(default_path(), exc)), EXIT_STORAGE
    if isinstance(exc, UnicodeDecodeError):
        return (
            f"a file is not UTF-8 text ({exc.reason} at byte {exc.start}) — "
            "give a text file saved as UTF-8",
            EXIT_INVALID,
        )
    if isinstance(exc, OSError) and exc.errno is not None:
        where = f"{exc.filename}: " if exc.filename else ""
        advice = _OS_ADVICE.get(exc.errno, "check the path and its permissions")
        return f"{where}{exc.strerror or exc} — {advice}", EXIT_STORAGE
    return None


def guarded(run: Callable[[], Any], prog: str) -> int:
    """Run a command and return its exit code, with every failure explained."""
    try:
        result = run()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo(f"\n{prog}: interrupted", err=True)
        return EXIT_INTERRUPTED
    except Exception as exc:
        known = explain(exc)
        if known is not None:
            message, code = known
            click.echo(f"{prog}: {message}", err=True)
            return code
        if os.environ.get(DEBUG_ENV):
            traceback.print_exc()
        click.echo(
            f"{prog}: internal error: {type(exc).__name__}: {exc} — this is a bug in gunctl; "
            f"please report it with the command you ran (set {DEBUG_ENV}=1 for the details)",
            err=True,
        )
        return EXIT_INTERNAL
    return result if isinstance(result, int) else 0


def quiet_background_errors() -> None:
    """Log what a background task or callback left unhandled, instead of printing a traceback.

    asyncio prints "Future exception was never retrieved" and a traceback when,
    say, the D-Bus connection under bleak dies after the link was already
    reported lost. A connection ending is expected there (logged at debug);
    anything else is logged as a warning, one line, without a traceback.
    """
    import asyncio

    import structlog

    log = structlog.get_logger("gunctl")

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        expected = isinstance(exc, EOFError | ConnectionError | BrokenPipeError)
        (log.debug if expected else log.warning)(
            "background_error", message=context.get("message"), error=repr(exc)
        )

    asyncio.get_running_loop().set_exception_handler(handle)


class Bounded(click.Group):
    """A click group whose every command runs inside the error boundary."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> NoReturn:
        parent = super().main
        code = guarded(
            lambda: parent(args, prog_name, complete_var, standalone_mode=False, **extra),
            prog_name or self.name or "gunctl",  # the group's name, not python's argv[0]
        )
        sys.stdout.flush()
        sys.exit(code)
