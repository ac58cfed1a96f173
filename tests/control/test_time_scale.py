"""Faster than real time, the host's own pauses are not a gun gone quiet.

At ``--time-scale 100`` a 100 ms pause of the host (a loaded machine) is 10 s
of session time: far past the telemetry staleness limit. The simulated gun
lives in the same event loop and was paused too, so that silence is not the
gun's; a gun that really goes quiet still stops the session. These run in
real time (no looptime): the pause is a real one.
"""

from __future__ import annotations

import asyncio
import time

from test_rules import one_step

from gunctl.clock import Clock
from gunctl.control.events import Event
from gunctl.control.supervisor import Supervisor
from gunctl.links.sim import SimLink
from gunctl.requests import SessionAction, Start
from gunsim import Silence, SimDevice

from rig import SPECS

SCALE = 100.0


async def run_paused(pauses: int, *, silence: bool) -> tuple[list[Event], bool]:
    spec = SPECS["gunctl-open"]
    clock = Clock(SCALE)
    async with SimDevice(spec, clock=clock) as sim:
        link = SimLink(sim)
        await link.connect()
        supervisor = Supervisor(spec, link, clock=clock)
        events = supervisor.bus.subscribe()
        task = asyncio.create_task(supervisor.run())
        plan = one_step("glute", "gunctl-open", hold_s=300, hold_max_s=310)
        await supervisor.request(Start(plan))
        sim.fit_head(plan.steps[0].head)
        await supervisor.request(SessionAction("confirm_head"))
        await asyncio.sleep(0.2)  # 20 s of session time: into the hold
        if silence:
            sim.faults.inject(Silence())
        for _ in range(pauses):  # the host stalls, every task in this loop with it
            time.sleep(0.1)  # noqa: ASYNC251  # 10 s of session time, twice the staleness limit
            await asyncio.sleep(0.005)
        await asyncio.sleep(0.2)
        running = sim.state.running
        await supervisor.close()
        await task
        return events.pending(), running


async def test_a_host_pause_at_scale_100_is_not_a_safety_stop() -> None:
    seen, running = await run_paused(5, silence=False)
    assert not [e for e in seen if e.type == "safety_stop"]
    assert running


async def test_a_silent_gun_at_scale_100_still_stops() -> None:
    seen, running = await run_paused(0, silence=True)
    stops = [e for e in seen if e.type == "safety_stop"]
    assert [s.rule for s in stops][:1] == ["stale_telemetry"]
    assert not running
