"""A rig for Supervisor tests: a simulated device, its SimLink, a Supervisor, events.

Imported by the tests in this folder (conftest.py only holds the fixture).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from gunctl.clock import Clock
from gunctl.control.events import ENDING_EVENTS, Event
from gunctl.control.supervisor import Supervisor
from gunctl.heads import Head
from gunctl.links.sim import SimLink
from gunctl.profiles.loader import load_catalogue
from gunctl.profiles.plan import Plan, make_plan
from gunctl.requests import SessionAction, Start
from gunctl.specs.loader import load_specs
from gunsim import SimDevice

CATALOGUE = load_catalogue()
SPECS = load_specs()
FAMILIES = sorted(SPECS)


def plan_for(protocol: str, spec: str, **kwargs: Any) -> Plan:
    return make_plan(CATALOGUE.protocols[protocol], CATALOGUE.muscles, SPECS[spec], **kwargs)


@dataclass
class Rig:
    device: SimDevice
    link: SimLink
    supervisor: Supervisor
    events: list[Event] = field(default_factory=list)
    confirm_heads: bool = True
    _tasks: list[asyncio.Task[Any]] = field(default_factory=list)
    _arrived: asyncio.Condition = field(default_factory=asyncio.Condition)

    @property
    def clock(self) -> Clock:
        return self.supervisor.clock

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of(self, kind: str) -> list[Any]:
        return [e for e in self.events if e.type == kind]

    async def start(self, plan: Plan) -> None:
        await self.supervisor.request(Start(plan))

    async def send(self, kind: str) -> None:
        await self.supervisor.request(SessionAction(kind))  # type: ignore[arg-type]

    async def until(self, kind: str, timeout: float = 1200.0, *, since: int | None = None) -> Event:
        """Wait (in loop time) for an event of ``kind`` after event number ``since`` (now)."""
        seen = len(self.events) if since is None else since
        async with asyncio.timeout(timeout), self._arrived:
            while True:
                for event in self.events[seen:]:
                    if event.type == kind:
                        return event
                seen = len(self.events)
                await self._arrived.wait()

    async def finish(self, timeout: float = 1200.0) -> Event:
        """Wait for the session to end, completed or aborted."""
        async with asyncio.timeout(timeout), self._arrived:
            await self._arrived.wait_for(
                lambda: any(isinstance(e, ENDING_EVENTS) for e in self.events)
            )
        return next(e for e in self.events if isinstance(e, ENDING_EVENTS))

    async def settle(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@contextlib.asynccontextmanager
async def open_rig(
    spec: str,
    *,
    confirm_heads: bool = True,
    device: dict[str, Any] | None = None,
    **supervisor: Any,
) -> AsyncIterator[Rig]:
    clock = Clock()
    sim = SimDevice(SPECS[spec], clock=clock, log_limit=None, **(device or {}))
    await sim.start()
    link = SimLink(sim)
    await link.connect()
    sup = Supervisor(SPECS[spec], link, clock=clock, **supervisor)
    rig = Rig(sim, link, sup, confirm_heads=confirm_heads)
    subscription = sup.bus.subscribe()

    async def follow() -> None:
        async for event in subscription:
            rig.events.append(event)
            async with rig._arrived:
                rig._arrived.notify_all()
            if event.type == "head_change_required" and rig.confirm_heads:
                sim.fit_head(Head(event.step.head))
                asyncio.get_running_loop().create_task(sup.request(SessionAction("confirm_head")))

    rig._tasks = [asyncio.create_task(sup.run()), asyncio.create_task(follow())]
    try:
        yield rig
    finally:
        with contextlib.suppress(Exception):
            await sup.close()
        for task in rig._tasks:
            task.cancel()
        await asyncio.gather(*rig._tasks, return_exceptions=True)
        await sim.aclose()
