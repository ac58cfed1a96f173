"""A Bluetooth LE connection's events: the only moments frames cross the air.

Two connected devices talk once every connection interval (7.5 ms to 4 s); a
frame written between two events waits for the next one, and so does a
notification. ``ConnectionEvents`` keeps that timing for one link (the
in-process ``SimLink`` and the fake BlueZ both use it). With no interval,
frames cross at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

from gunctl.clock import Clock

MIN_INTERVAL_S = 0.0075
MAX_INTERVAL_S = 4.0


class ConnectionEvents:
    def __init__(self, clock: Clock, interval_s: float | None) -> None:
        if interval_s is not None and not MIN_INTERVAL_S <= interval_s <= MAX_INTERVAL_S:
            raise ValueError("a connection interval is 7.5 ms to 4 s")
        self.clock = clock
        self.interval_s = interval_s
        self._anchor = 0.0  # clock time of the connection's first event
        self._waiting: list[bytes] = []  # notifications for the next event
        self._connection = 0  # a frame waiting when its connection went is not carried

    def open(self) -> None:
        """A new connection: its events count from now."""
        self._anchor = self.clock.now()
        self._connection += 1
        self._waiting = []

    def next_at(self) -> float:
        """Clock time of the next connection event (now, if one is due now)."""
        if self.interval_s is None:
            return self.clock.now()
        since = self.clock.now() - self._anchor
        return self._anchor + math.ceil(since / self.interval_s) * self.interval_s

    async def wait(self) -> None:
        """Until the next connection event, when a frame written now goes out."""
        if self.interval_s is not None:
            await self.clock.sleep(self.next_at() - self.clock.now())

    @property
    def ack_s(self) -> float:
        """How much later an acknowledgement comes back: the next event."""
        return self.interval_s or 0.0

    def carry(self, data: bytes, deliver: Callable[[bytes], None]) -> None:
        """Hand ``data`` to ``deliver`` at the next connection event, in order."""
        if self.interval_s is None:
            deliver(data)
            return
        if not self._waiting:  # the first frame waiting books the event for all of them
            wait = (self.next_at() - self.clock.now()) / self.clock.scale
            asyncio.get_running_loop().call_later(wait, self._land, self._connection, deliver)
        self._waiting.append(data)

    def _land(self, connection: int, deliver: Callable[[bytes], None]) -> None:
        frames, self._waiting = self._waiting, []
        if connection == self._connection:
            for data in frames:
                deliver(data)
