"""One gun's commands, run in the order they arrived, where a stop wins.

The rule, written once for every front end (a gun's ``set`` and ``stop``
topics, Home Assistant's buttons, ``stop_all``):

- a stop (``stop`` or ``pain_stop``) cancels every command for the gun that
  arrived before it and has not begun; each cancelled command is answered
  ``cancelled``;
- the stop is carried out at once, without waiting for the command in
  progress;
- every command that arrived after the stop runs after it, in arrival order.

A command in progress when a stop arrives has either reached the Supervisor
already (its request sits ahead of the stop in the Supervisor's own queue, so
the stop is obeyed after it) or not yet: only a start awaits anything before
its request (the day's pain blocks, the previous session's history), and it
looks at :attr:`Lane.stops` right before it hands its request over, giving up
(``cancelled``) if the count moved. So the last command
taken for a gun is the last one the gun obeys, and when that is a stop, the
gun ends stopped with no session.

A lane knows nothing of MQTT: it is handed parsed commands and hands back a
future per command with the executor's result, or its ``CommandError``.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gunctl.requests import STOPS, CommandError, DeviceCommand

Result = dict[str, Any]
Executor = Callable[[DeviceCommand], Awaitable[Result]]

CANCELLED = "a stop for this gun arrived after this command, before it ran"


@dataclass(frozen=True)
class _Ticket:
    command: DeviceCommand
    done: asyncio.Future[Result]


class Lane:
    def __init__(self, execute: Executor, name: str) -> None:
        self._execute = execute
        self._name = name
        self._waiting: deque[_Ticket] = deque()
        self._stops: set[asyncio.Task[None]] = set()  # stops being carried out
        self._wake = asyncio.Event()
        self._worker: asyncio.Task[None] | None = None
        self.stops = 0  # bumped the moment a stop arrives, before anything awaits

    def submit(self, command: DeviceCommand) -> asyncio.Future[Result]:
        """Take ``command`` in; the future ends with its result or its CommandError."""
        done: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        if command.action in STOPS:
            self.stops += 1
            while self._waiting:
                ticket = self._waiting.popleft()
                ticket.done.set_exception(CommandError("cancelled", CANCELLED, ticket.command.id))
            task = asyncio.create_task(self._carry(_Ticket(command, done)))
            self._stops.add(task)
            task.add_done_callback(self._stops.discard)
            return done
        self._waiting.append(_Ticket(command, done))
        self._wake.set()
        if self._worker is None:
            self._worker = asyncio.create_task(self._work(), name=f"lane {self._name}")
        return done

    @property
    def pending(self) -> int:
        """Commands taken and not yet begun."""
        return len(self._waiting)

    async def _work(self) -> None:
        while True:
            if not self._waiting:
                self._wake.clear()
                await self._wake.wait()
                continue
            if self._stops:  # everything waiting arrived after these: they go first
                await asyncio.wait(set(self._stops))
                continue
            await self._carry(self._waiting.popleft())

    async def _carry(self, ticket: _Ticket) -> None:
        try:
            result = await self._execute(ticket.command)
        except Exception as exc:  # CommandError, or a failure the caller reports
            if not ticket.done.done():
                ticket.done.set_exception(exc)
        else:
            if not ticket.done.done():
                ticket.done.set_result(result)

    async def aclose(self) -> None:
        """Cancel what waits, finish the stops under way, end the worker."""
        while self._waiting:
            ticket = self._waiting.popleft()
            ticket.done.set_exception(CommandError("cancelled", "the daemon is stopping"))
        if self._stops:
            await asyncio.wait(set(self._stops))
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
            self._worker = None
