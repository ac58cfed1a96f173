"""The backstops behind the plan: each holds on its own, even when nothing ahead of it does.

Today's plans and shipped specs never reach these limits, so each test forces
the situation the backstop is for (a step above its cap, a host limit above
the firmware's, a step with no ramp, a shutdown mid-hold on a gun with no
watchdog). ``scripts/mutation-check`` removes each mechanism in turn and
expects these tests to fail.
"""

from __future__ import annotations

import asyncio

import pytest
from test_rules import into_hold, one_step

from gunctl.control.driver import Driver
from gunctl.control.rules import Limits
from gunctl.specs.speed import setpoint_for
from gunsim import Overheat

from rig import CATALOGUE, SPECS, Rig, plan_for

pytestmark = pytest.mark.looptime(noop_cycles=1)


def set_speeds(rig: Rig) -> list[tuple[float, int]]:
    return [(c.at, c.command.ppm) for c in rig.device.commands if c.command.kind == "set_speed"]


@pytest.mark.parametrize("family", sorted(SPECS))
def test_the_driver_clamps_to_the_cap_it_is_given(family: str) -> None:
    spec = SPECS[family]
    driver = Driver(spec, link=None)  # type: ignore[arg-type]  # clamping writes nothing
    assert driver.clamp(1.0, 0.7) == setpoint_for(0.7, spec.capabilities)
    assert driver.clamp(0.5, 0.7) == setpoint_for(0.5, spec.capabilities)
    assert driver.clamp(2.0, 5.0) == setpoint_for(1.0, spec.capabilities)


async def test_a_step_above_its_cap_is_written_at_the_cap(rig_factory) -> None:
    rig: Rig = await rig_factory("gunctl-open")
    plan = one_step("glute", "gunctl-open", intensity=1.0, ramp_s=0.5)  # built in code, unchecked
    cap = plan.steps[0].cap
    assert cap < 1.0
    await into_hold(rig, plan, seconds=3)
    written = [ppm for _, ppm in set_speeds(rig)]
    assert max(written) == setpoint_for(cap, SPECS["gunctl-open"].capabilities).ppm


def test_the_plan_caps_every_step_at_the_persons_cap() -> None:
    plan = plan_for("glute", "gunctl-open", user_cap=0.3)
    for step in plan.steps:
        assert step.cap <= 0.3
        assert step.cap <= CATALOGUE.muscles[step.muscle].intensity_cap


async def test_the_temperature_stop_keeps_its_margin_below_the_firmware_cutoff(
    rig_factory,
) -> None:
    spec = SPECS["gunctl-open"]
    firmware = spec.capabilities.temperature_limit_c
    assert firmware is not None
    # host limits set above the firmware's own cutoff: the margin below it still holds
    limits = Limits(temperature_warn_c=firmware + 10, temperature_stop_c=firmware + 20)
    rig: Rig = await rig_factory("gunctl-open", limits=limits)
    await into_hold(rig, one_step("glute", "gunctl-open"))
    rig.device.faults.inject(Overheat(temperature_c=firmware - 4))
    stop = await rig.until("safety_stop", timeout=5)
    assert stop.rule == "temperature"
    assert stop.values["limit_c"] == firmware - 5


async def test_the_intensity_rises_no_faster_than_the_slew_limit(rig_factory) -> None:
    rig: Rig = await rig_factory("gunctl-open")
    plan = one_step("glute", "gunctl-open", ramp_s=0.0)  # the step itself asks for a jump
    await rig.start(plan)
    await rig.until("step_started")
    step = plan.steps[0]
    await asyncio.sleep(step.intensity / Limits().slew_per_s + 1)
    written = set_speeds(rig)
    reached = next(at for at, ppm in written if ppm == step.ppm)
    first = written[0][0]
    assert reached - first >= 0.9 * step.intensity / Limits().slew_per_s
    assert written[0][1] < step.ppm


async def test_closing_writes_stop_on_a_gun_with_no_watchdog(rig_factory) -> None:
    # theragun-gen4 keeps running without traffic: only the stop frame stops it
    rig: Rig = await rig_factory("theragun-gen4")
    await into_hold(rig, one_step("glute", "theragun-gen4"))
    assert rig.device.state.running
    await rig.supervisor.close()
    assert rig.link.connected  # the link is still up: the firmware saw no loss
    assert rig.device.commands[-1].command.kind == "stop"
    await asyncio.sleep(2)
    assert not rig.device.state.running
