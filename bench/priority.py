"""A busy neighbour, and the CPU priority the daemon is deployed with, for the benchmarks.

On a small home server gunctl shares the cores with other services (Home
Assistant, a database). ``--hog`` puts a busy process, pinned to core 0, beside
every measurement, floor included: a service of its own, at nice 0.

The unit gunctl serve is deployed with (docs/gunctl.service) gives the daemon
CPU priority over other services: ``CPUWeight=1000`` (its own CPU cgroup,
ten times a default service's weight) and ``Nice=-10`` (about nine times the
weight of nice 0). With ``--hog`` the benchmark takes that priority: the unit's
``Nice=``, unless ``--nice`` says otherwise (``--nice 0`` measures without
priority; below 0 needs root or CAP_SYS_NICE).

Where the kernel groups processes by session (autogroups, on in many
distributions and on the machine BENCHMARKS.md was measured on), a niceness
only ranks the processes of one session against each other; each session
competes as a whole at its group's niceness. A service started by systemd is a
session of its own, so there ``Nice=`` alone would not rank gunctl above
another service: the unit's CPU cgroup does. The benchmark does what comes
closest without touching the machine's cgroups: it runs in a session of its
own (re-started in one when a shell's job cannot leave its own), and so do the
hog and the helper services (the fake BlueZ); the niceness asked for is its
process's and its session group's. Every other session on the machine stays
at its own priority, as the other services would.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

UNIT = Path(__file__).resolve().parents[1] / "docs" / "gunctl.service"
AUTOGROUP = Path("/proc/self/autogroup")


def unit_nice() -> int:
    """The ``Nice=`` of the shipped unit file (0 if it sets none)."""
    for line in UNIT.read_text().splitlines():
        key, _, value = line.partition("=")
        if key.strip() == "Nice":
            return int(value)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--hog", action="store_true", help="a busy process pinned to core 0 beside every run"
    )
    parser.add_argument(
        "--nice",
        type=int,
        default=None,
        help=f"niceness to measure at (default with --hog: the unit file's, {unit_nice()}; "
        "without: unchanged)",
    )


def asked_nice(args: argparse.Namespace) -> int | None:
    nice: int | None = args.nice
    return unit_nice() if nice is None and args.hog else nice


def own_session(args: argparse.Namespace) -> None:
    """Go on in a session of one's own, as a service runs, when a priority is asked for.

    Call it first: when this process leads a shell's process group it cannot
    start a session, so the benchmark is run again in one and this process
    only waits for it and exits with its status.
    """
    if asked_nice(args) is None or os.getsid(0) == os.getpid():
        return
    try:
        os.setsid()
        return
    except PermissionError:  # a process group's leader
        pass
    child = subprocess.Popen([sys.executable, *sys.orig_argv[1:]], start_new_session=True)
    try:
        sys.exit(child.wait())
    finally:
        child.terminate()


def service(argv: list[str], **popen: Any) -> subprocess.Popen[str]:
    """A helper process started as another service would run: its own session, nice 0."""
    return subprocess.Popen(argv, start_new_session=True, text=True, **popen)


def as_service() -> None:
    """``preexec_fn`` for a helper started after :func:`take_priority`: a session of its
    own and nice 0, as :func:`service` starts one before it."""
    os.setsid()
    os.setpriority(os.PRIO_PROCESS, 0, 0)


@contextlib.contextmanager
def cpu_hog(on: bool) -> Iterator[int | None]:
    """A busy process pinned to the first core; yields its niceness (None without one)."""
    if not on:
        yield None
        return
    hog = service(
        [sys.executable, "-c", "import os\nos.sched_setaffinity(0, {0})\nwhile True: pass"]
    )
    try:
        yield os.getpriority(os.PRIO_PROCESS, hog.pid)
    finally:
        hog.kill()
        hog.wait()


def take_priority(args: argparse.Namespace) -> int:
    """Set this process's niceness as ``--nice``/``--hog`` ask; returns the niceness it runs at.

    Call it from the main thread before any other thread starts (on Linux a
    niceness belongs to a thread, and new threads take their creator's), and
    after the helper services have started, so they keep theirs.
    """
    nice = asked_nice(args)
    if nice is not None:
        try:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
            with contextlib.suppress(FileNotFoundError):  # a kernel without autogroups
                AUTOGROUP.write_text(str(nice))
        except PermissionError:
            sys.exit(f"--nice {nice} needs root or CAP_SYS_NICE (or --nice 0)")
    return os.getpriority(os.PRIO_PROCESS, 0)


def describe(hog_nice: int | None, nice: int) -> tuple[str, str, dict[str, Any]]:
    """For a run at ``nice``, beside a hog or not: a title suffix, a results-file suffix, meta."""
    hog = hog_nice is not None
    beside = f" beside a CPU hog on core 0 (nice {hog_nice})" if hog else ""
    autogroup = AUTOGROUP.read_text().strip() if AUTOGROUP.exists() else None
    return (
        f"{beside}, at nice {nice}",
        ("_hog" if hog else "") + (f"_nice{nice}" if nice else ""),
        {"hog": hog, "hog_nice": hog_nice, "nice": nice, "autogroup": autogroup},
    )
