"""Supervisors sharing a clock tick on its one metronome, each fifty times a second.

And the step a tick's decision takes before its writes go out cannot undo a
stop: a setpoint decided before a stop is dropped, not written after it.
"""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from gunctl.clock import Clock
from gunctl.control.driver import Driver
from gunctl.control.supervisor import Supervisor
from gunctl.links.sim import SimLink
from gunsim import SimDevice

from rig import SPECS

pytestmark = pytest.mark.looptime(noop_cycles=1)


async def test_supervisors_on_one_clock_each_tick_fifty_times_a_second() -> None:
    spec = SPECS["gunctl-open"]
    clock = Clock()
    async with contextlib.AsyncExitStack() as stack:
        supervisors: list[Supervisor] = []
        tasks = []
        for i in range(3):
            sim = await stack.enter_async_context(SimDevice(spec, clock=clock, address=f"m{i}"))
            link = SimLink(sim)
            await link.connect()
            supervisors.append(Supervisor(spec, link, clock=clock))
            tasks.append(asyncio.create_task(supervisors[-1].run()))
            await asyncio.sleep(0.007)  # each joins at its own moment
        await asyncio.sleep(1)
        before = [s.loop_stats.ticks for s in supervisors]
        await asyncio.sleep(10)
        ticks = [s.loop_stats.ticks - b for s, b in zip(supervisors, before, strict=True)]
        for supervisor in supervisors:
            await supervisor.close()
        await asyncio.gather(*tasks)
    assert all(499 <= n <= 501 for n in ticks), ticks
    assert [s.loop_stats.overruns for s in supervisors] == [0, 0, 0]


async def test_a_setpoint_decided_before_a_stop_is_not_written_after_it() -> None:
    spec = SPECS["gunctl-open"]
    async with SimDevice(spec, clock=Clock()) as sim:
        link = SimLink(sim)
        await link.connect()
        driver = Driver(spec, link)
        decided = driver.stops  # a tick decides to run the motor...
        await driver.stop()  # ...and a stop request goes out before its write
        setpoint = await driver.run_at(0.5, 1.0, after=decided)
        assert setpoint.stopped
        assert [c.command.kind for c in sim.commands] == ["stop"]
        assert not (await driver.run_at(0.5, 1.0)).stopped  # decided after the stop: written
