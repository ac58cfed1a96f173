"""gunctl's exit codes and its one error root.

Every failure a person can cause or meet (a bad file, a data folder that cannot
be written, a gun out of reach) is a :class:`GunctlError`, or one of the few
outside errors that ``gunctl.cli.boundary`` explains, and reaches the person as
one line, ``gunctl: what went wrong — what to do next``, with one of these
exit codes. Anything else is a bug: it exits 1 and says how to report it.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug in gunctl
EXIT_INVALID = 2  # invalid input: a usage error, a bad file, setting or variable
EXIT_SAFETY = 3  # a safety stop ended the session, or a safety rule refused to start it
EXIT_UNREACHABLE = 4  # the device could not be found or connected, or the link was lost
EXIT_STORAGE = 5  # a file or folder gunctl must read or write cannot be used
EXIT_INTERRUPTED = 130  # Ctrl-C, SIGTERM or q

EXIT_CODES = {
    EXIT_OK: "done",
    EXIT_INTERNAL: "a bug in gunctl (the message says how to report it)",
    EXIT_INVALID: "invalid input: a usage error, a bad file, setting or variable",
    EXIT_SAFETY: "a safety stop ended the session, or a safety rule refused to start it",
    EXIT_UNREACHABLE: "the device could not be found or connected, or the link was lost",
    EXIT_STORAGE: "a file or folder gunctl must read or write cannot be used",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C, SIGTERM or q)",
}


class GunctlError(Exception):
    """An expected failure: what went wrong, what to do next, and the exit code."""

    exit_code = EXIT_INVALID

    def __init__(self, what: str, next_step: str = "", exit_code: int | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.next_step = next_step
        if exit_code is not None:
            self.exit_code = exit_code

    def __str__(self) -> str:
        return f"{self.what} — {self.next_step}" if self.next_step else self.what


class StorageError(GunctlError):
    """A file or folder gunctl must read or write cannot be used."""

    exit_code = EXIT_STORAGE
