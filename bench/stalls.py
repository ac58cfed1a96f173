"""Whose a stall was: the process's own garbage collections, or the machine's scheduler.

A tick late by tens of milliseconds, every gun at once, has two usual causes:
the process was busy (a full garbage collection over many objects holds the
event loop for as long as it takes) or it was not running at all (runnable,
or asleep past its timer, while other processes had the cores). ``watch()``
measures both over a phase of a benchmark: each collection's generation and
CPU time (``gc.callbacks``), and how long the event loop's thread waited,
runnable, for a core (``/proc/thread-self/schedstat``, Linux; absent
elsewhere).
"""

from __future__ import annotations

import contextlib
import gc
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCHEDSTAT = Path("/proc/thread-self/schedstat")


def _waited_s() -> float | None:
    """This thread's time so far runnable but not running, or None where not known."""
    try:
        return int(SCHEDSTAT.read_text().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Stalls:
    collections: list[tuple[int, float]] = field(default_factory=list)  # generation, CPU s
    waited_s: float | None = None
    _began: float = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._began = time.thread_time()
        else:
            self.collections.append((info["generation"], time.thread_time() - self._began))

    def columns(self) -> dict[str, Any]:
        """For a row of a report: full collections, the longest collection, the wait for a core."""
        longest = max((cpu for _, cpu in self.collections), default=0.0)
        return {
            "full gcs": sum(1 for generation, _ in self.collections if generation == 2),
            "gc max ms": round(longest * 1000, 2),
            "cpu wait ms": "?" if self.waited_s is None else round(self.waited_s * 1000),
        }


@contextlib.contextmanager
def watch() -> Iterator[Stalls]:
    """Collections and the wait for a core while inside; call it on the event loop's thread."""
    stalls = Stalls()
    before = _waited_s()
    gc.callbacks.append(stalls._on_gc)
    try:
        yield stalls
    finally:
        gc.callbacks.remove(stalls._on_gc)
        after = _waited_s()
        if before is not None and after is not None:
            stalls.waited_s = after - before
