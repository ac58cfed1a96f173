"""gunctl's one error root, the errors a user can catch by class, and the exit codes.

Every failure a person can cause or meet (a bad file, a data folder that cannot
be written, a gun out of reach, a refused request, a safety stop) is a
:class:`GunctlError`. Each carries a machine-readable ``reason`` a program can
branch on, and ``advice``: what a person can do next. The CLI turns one into
one line, ``gunctl: what went wrong — what to do next``, with the exit code
that ``gunctl.cli.boundary.EXIT_FOR`` (the one table) gives its class; a
program catches the class it can act on::

    try:
        gun = await gunctl.connect("Pro")
    except gunctl.OutOfSlotsError:
        ...  # free a proxy slot and try again
    except gunctl.DeviceNotFoundError:
        ...  # switch the gun on

Anything else is a bug: the CLI exits 1 and says how to report it.
"""

from __future__ import annotations

from typing import Any

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
    """An expected failure: what went wrong, a ``reason`` to branch on, and ``advice``.

    ``reason`` defaults to the class's own.
    """

    reason: str = "error"

    def __init__(self, what: str, advice: str = "", *, reason: str | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.advice = advice
        if reason is not None:
            self.reason = reason

    def __str__(self) -> str:
        return f"{self.what} — {self.advice}" if self.advice else self.what


class StorageError(GunctlError):
    """A file or folder gunctl must read or write cannot be used."""

    reason = "storage"


class ConfigError(GunctlError, ValueError):
    """The configuration cannot be used; the message names every bad setting."""

    reason = "invalid_configuration"


class UnknownNameError(GunctlError, KeyError):
    """No firmware spec, protocol, muscle or rule by that name; the message lists the known."""

    reason = "unknown_name"


# -- reaching a gun ----------------------------------------------------------------


class LinkError(GunctlError):
    """A link operation failed; the device may or may not have seen it."""

    reason = "link_error"


class LinkLostError(LinkError):
    """The operation needs a connection that is not there (never made, or lost)."""

    reason = "link_lost"


class NoSpecError(LinkError):
    """The device was found but no firmware spec recognises it."""

    reason = "no_spec"


class ConnectError(LinkError):
    """A connection could not be made after every attempt the link allows."""

    reason = "connect_failed"


class DeviceNotFoundError(ConnectError):
    """No device with that address or name advertised within the timeout."""

    reason = "device_not_found"


class OutOfSlotsError(ConnectError):
    """Every adapter or proxy that hears the gun holds as many connections as it can."""

    reason = "out_of_connection_slots"


class ConnectAbortedError(ConnectError):
    """The adapter gave the connection up part way (BlueZ busy, or the gun went away)."""

    reason = "connect_aborted"


class BluetoothUnavailableError(ConnectError):
    """No BlueZ to talk to (no D-Bus system bus, no adapter, or it is off)."""

    reason = "bluetooth_unavailable"


class ProxyError(ConnectError):
    """A proxy could not be used (unreachable, wrong key, or none configured)."""

    reason = "proxy_unusable"


# -- sessions ------------------------------------------------------------------------


class RequestRefusedError(GunctlError):
    """A request (start, pause, skip, ...) the gun's controller refused; it says why."""

    reason = "refused"


class SafetyStopError(GunctlError):
    """A safety rule stopped the motor, or refused to start a session; ``rule`` names it."""

    reason = "safety_stop"

    def __init__(
        self,
        rule: str,
        message: str,
        values: dict[str, Any] | None = None,
        advice: str = "",
        *,
        what: str | None = None,  # the line to show, when not "safety stop (rule): message"
    ) -> None:
        super().__init__(what or f"safety stop ({rule}): {message}", advice)
        self.rule = rule
        self.values = dict(values or {})
