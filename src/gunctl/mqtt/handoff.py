"""From the network thread to the event loop: in order, bounded, in batches.

The main connection's network loop runs in a thread of its own
(:class:`gunctl.mqtt.client.Connection`). Each message it reads is offered
here, in that thread, and queued for the event loop; the loop is woken once
for a batch, not once a message, and takes the queue in slices of at most
:data:`SLICE_S`, handing the loop back between two slices so that no control
loop waits behind a flood.

The main connection carries no commands (they come from the commands process,
:mod:`gunctl.mqtt.setline`), but anyone allowed to publish can still flood,
say, the availability topics. So the queue is bounded: past :data:`BOUND`
messages waiting, the flood is outrunning the loop, and what comes is shed and
counted (``overloaded``), to be logged and reported in the bridge's
diagnostics like every refusal. What was read is taken even after the
connection is lost: the broker has had its acknowledgement, so it will not send
it again. The commands process bounds what waits for the daemon too, never
shedding a stop below twice its bound (:mod:`gunctl.mqtt.screen`).
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

BOUND = 1000  # messages waiting for the event loop before any is shed
SLICE_S = 0.002  # the longest the event loop spends on received messages at one go

T = TypeVar("T")


class Handoff(Generic[T]):
    def __init__(self, take: Callable[[T], None]) -> None:
        """``take`` runs on the event loop for each message."""
        self._take = take
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

    def offer(self, message: T) -> None:
        """In the network thread: queue ``message`` (or shed it), and wake the loop once."""
        waiting = len(self._queue)
        if waiting >= BOUND:
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
