"""Test code of your own against a simulated gun, with pytest and pytest-asyncio.

    pytest examples/test_my_routine.py

``gunctl.simulate`` takes the simulator's faults, so a test can make the gun
overheat and check that the code around it copes with a safety stop.
"""

from __future__ import annotations

import pytest

import gunctl
from gunsim import Overheat


async def my_routine(gun: gunctl.Gun) -> str:
    """The code under test: one side, and a message for the person either way."""
    try:
        await gun.run("glute", side="right")
    except gunctl.SafetyStopError as stop:
        return f"stopped for your safety ({stop.rule}); let the gun cool down"
    return "all done"


@pytest.mark.asyncio
async def test_my_routine_finishes() -> None:
    async with gunctl.simulate("gunctl-open", time_scale=100) as gun:
        assert await my_routine(gun) == "all done"
        assert gun.state().phase == "done"


@pytest.mark.asyncio
async def test_my_routine_copes_with_an_overheating_gun() -> None:
    async with gunctl.simulate(
        "gunctl-open", time_scale=100, faults=[(20.0, Overheat(temperature_c=75))]
    ) as gun:
        assert (
            await my_routine(gun) == "stopped for your safety (temperature); let the gun cool down"
        )
        assert gun.state().phase == "safety_stop"  # and nothing resumes by itself
