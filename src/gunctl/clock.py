"""Time as the control loop and the simulator see it.

Everything time-based in gunctl reads this clock, which is built on the asyncio
loop's own clock. Tests run the loop under ``looptime`` so a ten-minute protocol
passes in a fraction of a second; demos pass ``scale`` so a session runs faster
than real time on the simulator. A real device always runs at scale 1.
``wall_now`` is the calendar side: the date and time history is written with.
"""

import asyncio
import os
import time
from datetime import UTC, datetime, timedelta

from gunctl.errors import GunctlError


class Clock:
    def __init__(self, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = scale
        self._origin: float | None = None

    def _loop_time(self) -> float:
        return asyncio.get_running_loop().time()

    def now(self) -> float:
        """Seconds of session time since the clock was first read."""
        t = self._loop_time()
        if self._origin is None:
            self._origin = t
        return (t - self._origin) * self.scale

    def real_floor(self, seconds: float, real_s: float = 0.05) -> float:
        """``seconds`` of clock time, but never less than ``real_s`` of real time.

        Running faster than real time magnifies the host's own scheduling
        jitter by the scale; time limits meant for a device's reaction (a
        watchdog, telemetry staleness) must not trip on that jitter in a demo.
        At scale 1 this is ``seconds`` itself.
        """
        return max(seconds, real_s * self.scale) if self.scale > 1 else seconds

    def host_pause(self, late: float, real_s: float = 0.02) -> float:
        """How much of a wake-up ``late`` (clock seconds) was the host pausing, not the device.

        Faster than real time, a simulated device shares the host's event loop, so
        a pause of the host (a loaded machine) stops it too, and the scale
        multiplies that pause into seconds of silence no gun caused. A wake-up
        later than ``real_s`` of real time is such a pause; at scale 1 none is.
        """
        return late if self.scale > 1 and late > real_s * self.scale else 0.0

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)

    async def sleep_until(self, deadline: float) -> None:
        """Sleep to an absolute deadline, so repeated ticks never drift."""
        await self.sleep(deadline - self.now())


# -- the wall clock ------------------------------------------------------------

TEST_NOW_ENV = "GUNCTL_TEST_NOW"
_STARTED = time.monotonic()


def wall_now() -> datetime:
    """The date and time now, aware, in UTC: what history and pain blocks are dated by.

    For tests only: ``GUNCTL_TEST_NOW`` (ISO 8601, local time when it has no
    zone) sets the wall clock as this process started, and it runs on from
    there, so a test can run a session "tomorrow" without waiting a day.
    """
    text = os.environ.get(TEST_NOW_ENV)
    if not text:
        return datetime.now(UTC)
    try:
        start = datetime.fromisoformat(text)
    except ValueError:
        raise GunctlError(
            f"{TEST_NOW_ENV}={text!r} is not an ISO 8601 date and time",
            f"unset {TEST_NOW_ENV}: it is for tests only",
        ) from None
    return start.astimezone(UTC) + timedelta(seconds=time.monotonic() - _STARTED)
