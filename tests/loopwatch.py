"""A watch on the event loop: no callback may hold it for more than 5 ms once a Supervisor runs.

asyncio's own slow-callback warning (debug mode) reads ``loop.time()``, which
``looptime`` replaces with virtual time, so it never fires under the test
suite; it also cannot tell a callback that blocked from one the operating
system paused. This watch times every callback with the real clocks instead,
and counts two kinds of slow callback:

- one that used over 5 ms of its thread's CPU: work that belongs off the loop
  (time in Python's cyclic garbage collector, which any callback may trigger,
  is left out);
- one that took over 5 ms of real time and, meanwhile, did something that
  blocks on the loop thread: opened a file, ran an SQLite statement, started a
  process, resolved or connected a socket synchronously (seen through
  Python's audit hooks and SQLite's statement trace). A module imported on
  first use is held to the CPU limit only: it happens once per process.

Real time lost to a loaded machine (the process paused, or waiting for the
GIL while a worker thread runs) is neither, so the watch holds on a busy CI
machine. A thread's CPU clock is not exact there either: on a shared virtual
machine with both cores busy, a fixed 0.6 ms of work has read as 3.2 ms. So a
test the watch fails runs once more (pytest-rerunfailures, ``--only-rerun``
in pyproject.toml, for this failure alone), and fails only if a callback is
slow again: work that blocks the loop does so every time (a spec parsed on
each reconnect, a file written on the loop), a blip does not, and the rerun
is listed in the summary all the same.

The test function's own task is not watched: it plays the person and the
outside world, and may block as they do. The watch arms when the
first ``Supervisor.run`` starts in a test; the test fails with every slow
callback listed (what ran, for how long, what it blocked on).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sqlite3
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from gunctl.control.supervisor import Supervisor

LIMIT_S = 0.005
BLOCKING_EVENTS = frozenset(
    {
        "open",
        "os.listdir",
        "os.scandir",
        "glob.glob",
        "subprocess.Popen",
        "os.system",
        "socket.getaddrinfo",
        "socket.gethostbyname",
        "socket.connect",
    }
)


@dataclass
class Slow:
    what: str
    wall_s: float
    cpu_s: float
    blocked_on: list[str]

    def __str__(self) -> str:
        why = f"blocked on {', '.join(self.blocked_on[:3])}" if self.blocked_on else "computed"
        return (
            f"{self.what}: {self.wall_s * 1000:.1f} ms real, {self.cpu_s * 1000:.1f} ms CPU ({why})"
        )


@dataclass
class Watch:
    armed: bool = False
    test: str = ""  # the test function's name: its own task is not watched
    slow: list[Slow] = field(default_factory=list)
    gc_s: float = 0.0  # time spent collecting garbage, all told
    loop_thread: int | None = None  # set while a callback runs
    blocked_on: list[str] = field(default_factory=list)
    _gc_began: float = 0.0

    def reset(self, test: str = "") -> None:
        self.armed = False
        self.test = test
        self.slow.clear()

    def on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_began = time.thread_time()
        else:
            self.gc_s += time.thread_time() - self._gc_began

    def note(self, what: str) -> None:
        if self.loop_thread == threading.get_ident():
            self.blocked_on.append(what)


WATCH = Watch()


_new_connections: list[sqlite3.Connection] = []


def _trace_new_connections() -> None:
    """Trace statements on connections opened since; the audit event comes before they work."""
    while _new_connections:
        connection = _new_connections.pop()
        with contextlib.suppress(sqlite3.Error):  # closed already, or bound to another thread
            connection.set_trace_callback(lambda sql: WATCH.note(f"sqlite {sql.split()[0]}"))


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "sqlite3.connect/handle":
        _new_connections.append(args[0])
    elif event in BLOCKING_EVENTS and not _importing(event, args):
        WATCH.note(f"{event} {args[0]!r}"[:80])


def _importing(event: str, args: tuple[Any, ...]) -> bool:
    """A module loaded on first use: once per process, and held to the CPU limit instead."""
    path = str(args[0]) if args else ""
    return event in ("open", "os.listdir", "os.scandir") and (
        path.endswith((".py", ".pyc", ".so")) or "site-packages" in path or "/lib/python" in path
    )


def _task(handle: asyncio.Handle) -> asyncio.Task[Any] | None:
    owner = getattr(getattr(handle, "_callback", None), "__self__", None)
    return owner if isinstance(owner, asyncio.Task) else None


def _describe(handle: asyncio.Handle) -> str:
    task = _task(handle)
    if task is None:
        return repr(handle)
    coro: Any = task.get_coro()
    return f"task {task.get_name()!r} ({getattr(coro, '__qualname__', coro)})"


_handle_run = asyncio.Handle._run


def _timed_run(self: asyncio.Handle) -> None:
    if not WATCH.armed:
        _handle_run(self)
        return
    _trace_new_connections()
    WATCH.loop_thread, WATCH.blocked_on = threading.get_ident(), []
    wall, cpu, collected = time.perf_counter(), time.thread_time(), WATCH.gc_s
    try:
        _handle_run(self)
    finally:
        WATCH.loop_thread = None
    wall = time.perf_counter() - wall
    if wall <= LIMIT_S:
        return
    collected = WATCH.gc_s - collected
    cpu = time.thread_time() - cpu - collected
    if cpu > LIMIT_S or WATCH.blocked_on:
        task = _task(self)
        coro: Any = task.get_coro() if task is not None else None
        if getattr(coro, "__name__", None) != WATCH.test:
            WATCH.slow.append(Slow(_describe(self), wall - collected, cpu, WATCH.blocked_on))


_supervisor_run = Supervisor.run


async def _armed_run(self: Supervisor) -> str:
    WATCH.armed = True
    return await _supervisor_run(self)


def install() -> None:
    asyncio.Handle._run = _timed_run  # type: ignore[method-assign]
    Supervisor.run = _armed_run  # type: ignore[method-assign]
    gc.callbacks.append(WATCH.on_gc)
    sys.addaudithook(_audit)
