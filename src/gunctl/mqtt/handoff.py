"""From the network thread to the event loop: in order, bounded, in batches, stops never shed.

The main connection's network loop runs in a thread of its own
(:class:`gunctl.mqtt.client.Connection`). Each message it reads and does not
refuse there (:meth:`gunctl.mqtt.intake.Intake.screen`) is offered here, in
that thread, and queued for the event loop; the loop is woken once
for a batch, not once a message, and takes the queue in slices of at most
:data:`SLICE_S`, handing the loop back between two slices so that no control
loop waits behind a flood. Messages keep their order, so a stop still wins
over exactly the commands that arrived before it (:mod:`gunctl.lane`).

The queue is bounded. Past :data:`BOUND` messages waiting, a flood is
outrunning the loop: a message that may be a stop (its payload says ``stop``,
which every stop, pain stop and stop_all does, or it is not a command at all)
is still queued, up to twice the bound, and anything else is shed and
counted (``overloaded``), to be logged and reported in the bridge's
diagnostics like every other refusal. What was read is taken even after the
connection is lost: the broker has had its acknowledgement, so it will not send
it again.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import structlog

log = structlog.get_logger("gunctl.mqtt")

BOUND = 1000  # messages waiting for the event loop before anything but a stop is shed
SLICE_S = 0.002  # the longest the event loop spends on received messages at one go

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(
        self,
        take: Callable[[T], None],
        urgent: Callable[[T], bool],
    ) -> None:
        """``take`` runs on the event loop for each message; ``urgent`` (in the network
        thread, past the bound) says whether it may be a stop, or is not a command."""
        self._take = take
        self._urgent = urgent
        self._queue: deque[T] = deque()
        self._lock = threading.Lock()
        self._scheduled = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self.shed = 0  # messages shed; written in the network thread only
        self.most_waiting = 0  # the longest the queue has been

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def __len__(self) -> int:
        return len(self._queue)

    def call_soon_threadsafe(self, callback: Callable[[], None]) -> None:
        """From the network thread: have the event loop call ``callback``."""
        assert self._loop is not None
        self._loop.call_soon_threadsafe(callback)

    def offer(self, message: T) -> None:
        """In the network thread: queue ``message`` (or shed it), and wake the loop once."""
        waiting = len(self._queue)
        if waiting >= BOUND and (waiting >= 2 * BOUND or not self._urgent(message)):
            self.shed += 1
            return
        with self._lock:
            self._queue.append(message)
            self.most_waiting = max(self.most_waiting, waiting + 1)
            if self._scheduled:
                return
            self._scheduled = True
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self._drain)

    def _drain(self) -> None:
        """On the event loop: take messages for one slice, then let everything else run."""
        ends = time.perf_counter() + SLICE_S
        while True:
            with self._lock:
                if not self._queue:
                    self._scheduled = False
                    return
                message = self._queue.popleft()
            try:
                self._take(message)
            except Exception:
                log.exception("message_failed", message=repr(message)[:200])
            if time.perf_counter() >= ends:
                asyncio.get_running_loop().call_soon(self._drain)
                return
