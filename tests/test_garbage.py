"""What the cyclic garbage collector has to walk: neither closed guns nor long logs.

A full collection holds every control loop of the process at once, for as
long as it walks the objects it tracks. Beside a running session, 15
simulated guns coming and going left about 140 objects each in reference
cycles (a session's, 440), and collections over them took 27 to 31 ms of CPU,
more than a tick's period; 64 simulated guns' command logs grew the tracked
objects by about 900 a second, to full collections of 41 ms after two
minutes (BENCHMARKS.md, "Hot-plug beside a running session" and "64 guns
beside a CPU hog").
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

from gunctl.clock import Clock
from gunctl.devices import Device, connect_sim
from gunctl.heads import Head
from gunctl.profiles.loader import load_catalogue
from gunctl.profiles.plan import make_plan
from gunctl.requests import SessionAction, Start

pytestmark = pytest.mark.looptime(noop_cycles=1)


@contextlib.contextmanager
def collector_off() -> Iterator[None]:
    """Nothing freed but by reference counting while inside."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


async def fit_heads(device: Device) -> None:
    """The person fitting each head asked for; ends without closing its subscription."""
    async for event in device.subscribe():
        if event.type == "head_change_required":
            assert device.sim is not None
            device.sim.fit_head(Head(event.step.head))
            await device.request(SessionAction("confirm_head"))


def parts(device: Device) -> list[weakref.ref[Any]]:
    """Weak references to what a gun is made of, on both sides of the link."""
    sim, session = device.sim, device.supervisor.session
    assert sim is not None
    assert session is not None
    return [
        weakref.ref(x)
        for x in (
            device.supervisor,
            session,
            device.supervisor.bus,
            device.link,
            sim,
            sim.firmware,
            sim.faults,
        )
    ]


async def test_a_gun_closed_mid_session_is_freed_without_the_collector() -> None:
    catalogue = load_catalogue()
    with collector_off():
        device = await connect_sim("gunctl-open", clock=Clock(), device_id="sim-freed")
        helper = asyncio.create_task(fit_heads(device))
        plan = make_plan(catalogue.protocols["glute"], catalogue.muscles, device.spec)
        await device.request(Start(plan))
        await asyncio.sleep(30)  # the motor running, telemetry and keepalives flowing
        assert device.supervisor.running
        made = parts(device)
        helper.cancel()
        await device.aclose()
        await asyncio.sleep(0)
        del device, helper
        alive = [ref() for ref in made if ref() is not None]
        assert alive == []


async def test_the_simulated_firmware_s_command_log_is_not_walked_by_the_collector() -> None:
    device = await connect_sim("gunctl-open", clock=Clock(), device_id="sim-log")
    try:
        await asyncio.sleep(30)  # the Supervisor's keepalives, 5 a second
        assert device.sim is not None
        firmware = device.sim.firmware
        assert len(firmware.commands) > 100
        gc.collect()
        assert not any(gc.is_tracked(entry) for entry in firmware._frames)
    finally:
        await device.aclose()
