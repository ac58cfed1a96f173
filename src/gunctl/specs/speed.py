"""Mapping an intensity (0..1) onto what a device can actually run at.

An intensity is device-independent: 0 is stopped, 1 is the top of the
device's usable range. Continuous devices map linearly onto min..max ppm;
discrete devices take the nearest level at or below that ppm, so rounding can
only ever make a setpoint gentler.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from gunctl.specs.models import Capabilities


@dataclass(frozen=True)
class Setpoint:
    ppm: int  # 0 when stopped
    level: int | None = None  # 1-based, discrete devices only

    @property
    def stopped(self) -> bool:
        return self.ppm == 0


STOPPED = Setpoint(0)


def setpoint_for(intensity: float, caps: Capabilities) -> Setpoint:
    if not intensity > 0:  # also catches NaN
        return STOPPED
    intensity = min(intensity, 1.0)
    if caps.speed is not None:
        low, high = caps.speed.min_ppm, caps.speed.max_ppm
        return Setpoint(int(low + intensity * (high - low)))
    levels = caps.levels_ppm
    assert levels is not None
    target = levels[0] + intensity * (levels[-1] - levels[0])
    level = max(1, bisect.bisect_right(levels, target + 1e-9))
    return Setpoint(levels[level - 1], level)
