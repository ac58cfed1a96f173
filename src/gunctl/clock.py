"""Time as the control loop and the simulator see it.

Everything time-based in gunctl reads this clock, which is built on the asyncio
loop's own clock. Tests run the loop under ``looptime`` so a ten-minute protocol
passes in a fraction of a second; demos pass ``scale`` so a session runs faster
than real time on the simulator. A real device always runs at scale 1.
``wall_now`` is the calendar side: the date and time history is written with.
"""

import asyncio
import contextlib
import functools
import os
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Protocol

from gunctl.errors import GunctlError


class Clock:
    def __init__(self, scale: float = 1.0) -> None:
        if scale <= 0:
            raise ValueError("time scale must be positive")
        self.scale = scale
        self._origin: float | None = None
        self._metronomes: dict[float, Metronome] = {}

    def now(self) -> float:
        """Seconds of session time since the clock was first read."""
        t = asyncio.get_running_loop().time()
        if self._origin is None:
            self._origin = t
        return (t - self._origin) * self.scale

    def real_floor(self, seconds: float) -> float:
        """``seconds`` of clock time, but never less than ``seconds`` of real time.

        A limit on a device's reaction (a watchdog, telemetry staleness) is
        about the host, the bus and the radio, and they run in real time: a
        time scale makes them no quicker, it only multiplies their jitter into
        session time. Faster than real time such a limit holds as long in real
        time as at scale 1, so a demo trips on no jitter a real run would not.
        At scale 1 (or slower) this is ``seconds`` itself.
        """
        return seconds * max(self.scale, 1.0)

    def host_pause(self, late: float, real_s: float = 0.02) -> float:
        """How much of a wake-up ``late`` (clock seconds) was the host pausing, not the device.

        A simulated device is paused with the host that runs it: with the loop
        it shares, or with its own process and loop. Its silence then is no
        gun's, and a time scale multiplies it further. Only what goes beyond
        ``real_s`` of real time counts: a loop that is merely busy, every
        wake-up a little late, is not paused, so a device gone silent on a
        loaded machine is still seen as silent. The callers decide whether the
        device is a simulated one; a real gun's silence is always its own.
        """
        return max(0.0, late - real_s * self.scale)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds) / self.scale)

    async def sleep_until(self, deadline: float) -> None:
        """Sleep to an absolute deadline, so repeated ticks never drift."""
        await self.sleep(deadline - self.now())

    def call_at(self, deadline: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        """Call ``callback`` at clock time ``deadline``, on the event loop's own timer."""
        loop = asyncio.get_running_loop()
        return loop.call_at(loop.time() + (deadline - self.now()) / self.scale, callback)

    def metronome(self, period: float) -> "Metronome":
        """The one metronome beating every ``period`` on this clock, shared by all who ask."""
        if period not in self._metronomes:
            self._metronomes[period] = Metronome(self, period)
        return self._metronomes[period]


class Beating(Protocol):
    def beat(self, deadline: float) -> None:
        """Called at each deadline (clock time); returns at once and never raises."""
        ...


class Metronome:
    """One timer for every control loop on a clock that runs at one rate.

    Fifty times a second per gun, a loop that sleeps on its own pays for a
    timer, a future and a task woken up; with 64 guns in one daemon that is
    most of what a tick costs. The metronome keeps one timer and, at each
    deadline, calls every member's ``beat`` in turn. Deadlines are absolute
    (start + n periods from the first member's joining), so beats never drift;
    a beat that comes more than a period late skips the ones it missed.
    """

    def __init__(self, clock: Clock, period: float) -> None:
        if period <= 0:
            raise ValueError("a period must be positive")
        self.clock = clock
        self.period = period
        self._members: list[Beating] = []
        self._timer: asyncio.TimerHandle | None = None
        self._start = 0.0
        self._n = 0

    def join(self, member: Beating) -> None:
        self._members.append(member)
        if self._timer is None:
            self._start, self._n = self.clock.now(), 0
            self._next()

    def leave(self, member: Beating) -> None:
        with contextlib.suppress(ValueError):
            self._members.remove(member)
        if not self._members and self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _next(self) -> None:
        self._n += 1
        deadline = self._start + self._n * self.period
        self._timer = self.clock.call_at(deadline, functools.partial(self._beat, deadline))

    def _beat(self, deadline: float) -> None:
        late = self.clock.now() - deadline
        if late > self.period:
            self._n += int(late / self.period)  # skip the beats that were missed
        self._next()
        for member in tuple(self._members):
            member.beat(deadline)


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
