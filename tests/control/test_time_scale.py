"""A simulated gun's silence through a pause of the host is not a gun gone quiet.

At ``--time-scale 100`` a 100 ms pause of the host (a loaded machine) is 10 s
of session time; at any scale, a pause longer than the staleness limit is
longer than the limit. The simulated gun lives in the same event loop and was
paused too, so that silence is not the gun's. A simulated gun that really goes
quiet still stops the session, also on a busy loop whose every wake-up comes a
little late; a gun that does not run in the host's loop (a real one, at scale 1)
and is silent through such a pause is stopped as soon as the pause ends. These run in real time (no
looptime): the pauses are real ones.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from test_rules import one_step

from gunctl.clock import Clock
from gunctl.control.events import Event
from gunctl.control.supervisor import Supervisor
from gunctl.links.sim import SimLink
from gunctl.requests import SessionAction, Start
from gunsim import Silence, SimDevice

from rig import SPECS

PAUSE_S = 0.7  # real seconds: past the staleness limit (0.25 s) and the watchdog (0.6 s)


class ElsewhereLink(SimLink):
    """The simulated gun, seen as a gun outside the host's loop would be (a real one)."""

    @property
    def in_process(self) -> bool:
        return False


async def run_paused(
    scale: float,
    *,
    pauses: int = 0,
    busy_s: float = 0.0,
    silence: bool = False,
    link: type[SimLink] = SimLink,
) -> tuple[list[Event], bool]:
    """A hold on the simulated gun while the host pauses, or stays busy (until it stops)."""
    spec = SPECS["gunctl-open"]
    clock = Clock(scale)
    async with SimDevice(spec, clock=clock) as sim:
        supervisor = Supervisor(spec, link(sim), clock=clock)
        await supervisor.link.connect()
        events = supervisor.bus.subscribe()
        task = asyncio.create_task(supervisor.run())
        plan = one_step("glute", "gunctl-open", hold_s=3000, hold_max_s=3100)
        await supervisor.request(Start(plan))
        sim.fit_head(plan.steps[0].head)
        await supervisor.request(SessionAction("confirm_head"))
        await clock.sleep(1.0)  # into the hold
        if silence:
            sim.faults.inject(Silence())
        for _ in range(pauses):  # the host stalls, every task in this loop with it
            time.sleep(PAUSE_S)  # noqa: ASYNC251
            await asyncio.sleep(0.005)
        busy_until = time.monotonic() + busy_s
        while time.monotonic() < busy_until and sim.state.running:  # every wake-up 30 ms late
            time.sleep(0.03)  # noqa: ASYNC251
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)  # shorter than the staleness limit at any scale
        running = sim.state.running
        await supervisor.close()
        await task
        return events.pending(), running


def safety_stops(events: list[Event]) -> list[str]:
    return [e.rule for e in events if e.type == "safety_stop"]


@pytest.mark.parametrize("scale", [1.0, 100.0])
async def test_a_host_pause_is_not_a_simulated_guns_silence(scale: float) -> None:
    seen, running = await run_paused(scale, pauses=1)
    assert safety_stops(seen) == []
    assert running


@pytest.mark.parametrize("scale", [1.0, 100.0])
async def test_a_silent_simulated_gun_still_stops_on_a_busy_host(scale: float) -> None:
    seen, running = await run_paused(scale, busy_s=5.0, silence=True)
    assert safety_stops(seen)[:1] == ["stale_telemetry"]
    assert not running


async def test_a_real_gun_silent_through_a_host_pause_stops_at_once() -> None:
    seen, running = await run_paused(1.0, pauses=1, silence=True, link=ElsewhereLink)
    assert safety_stops(seen)[:1] == ["stale_telemetry"]
    assert not running
