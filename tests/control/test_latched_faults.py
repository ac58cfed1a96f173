"""Latched fault flags: an earlier event is reported and cleared, a fault now still stops.

The spec of each family names the flags its firmware latches (``latched``)
and what clears them. Every test runs for each latched flag of each family.
"""

from __future__ import annotations

import asyncio

import pytest
from test_rules import into_hold, one_step

from gunctl.control.rules import RuleSet
from gunsim import SimDevice

from rig import SPECS, Rig

pytestmark = pytest.mark.looptime(noop_cycles=1)

LATCHED = [(family, flag) for family in sorted(SPECS) for flag in SPECS[family].latched_faults]


def raise_flag(device: SimDevice, flag: str) -> None:
    """What the firmware does when the event behind ``flag`` happens: stop and latch it."""
    device.firmware.faults.add(flag)
    device.firmware.stop(device.elapsed, flag, "raised by the test")


def test_the_shipped_specs_say_which_flags_latch() -> None:
    assert SPECS["gunctl-open"].latched_faults.keys() == {"watchdog", "stall"}
    assert SPECS["basic-5level"].latched_faults.keys() == {"stall"}
    assert LATCHED


@pytest.mark.parametrize(("family", "flag"), LATCHED)
async def test_a_flag_latched_earlier_is_reported_and_cleared_by_the_start(
    rig_factory, family: str, flag: str
) -> None:
    rig: Rig = await rig_factory(family)
    raise_flag(rig.device, flag)  # say, a watchdog trip when the last session lost its link
    await asyncio.sleep(1)
    plan = one_step("glute", family, hold_s=10)
    await rig.start(plan)
    end = await rig.finish(timeout=120)
    assert end.type == "session_completed", rig.of("safety_stop")
    warnings = [w for w in rig.of("warning") if w.rule == "device_fault"]
    assert [w.values["latched"] for w in warnings] == [[flag]]
    assert flag not in rig.device.firmware.faults  # the start cleared it, as the spec says


@pytest.mark.parametrize(("family", "flag"), LATCHED)
@pytest.mark.parametrize("enabled", [True, False], ids=["rule-on", "rule-off"])
async def test_a_latched_flag_raised_while_running_stops_at_once(
    rig_factory, family: str, flag: str, enabled: bool
) -> None:
    rules = RuleSet() if enabled else RuleSet.without("device_fault")
    rig: Rig = await rig_factory(family, rules=rules)
    await into_hold(rig, one_step("glute", family))
    raised_at = rig.clock.now()
    raise_flag(rig.device, flag)
    await asyncio.sleep(3)
    stops = rig.of("safety_stop")
    if enabled:
        assert stops[0].rule == "device_fault"
        assert stops[0].values["faults"] == [flag]
        period = SPECS[family].capabilities.telemetry.period_s
        assert stops[0].at - raised_at <= period + 1e-6  # on the first frame that carries it
    else:
        assert "device_fault" not in [s.rule for s in stops]


async def test_a_fault_present_before_the_start_still_refuses_it(rig_factory) -> None:
    rig: Rig = await rig_factory("gunctl-open")
    rig.device.firmware.faults.add("overcurrent")  # not latched: it is a fault now
    await asyncio.sleep(1)
    await rig.start(one_step("glute", "gunctl-open"))
    end = await rig.finish(timeout=10)
    assert end.type == "session_aborted"
    assert rig.of("safety_stop")[0].values["faults"] == ["overcurrent"]
    assert not any(c.command.kind == "set_speed" for c in rig.device.commands)
