"""Session events and processes for history tests."""

from __future__ import annotations

import subprocess
import sys

from gunctl.control.events import StepInfo, StepStarted

DEVICE = "AA:BB:CC:DD:EE:01"


def step(index: int, muscle: str, side: str = "left", at: float = 0.0) -> StepStarted:
    info = StepInfo(
        index=index,
        muscle=muscle,
        side="left" if side == "left" else "right",
        head="ball",
        hold_s=60.0,
        ppm=1800,
        placement="the fleshy middle",
    )
    return StepStarted(at=at, device=DEVICE, step=info)


def dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid
