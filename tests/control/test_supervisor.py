"""The Supervisor against the simulator: normal runs, requests, the caps."""

from __future__ import annotations

import asyncio

import pytest

from gunctl.control.supervisor import NoExposure, RequestRefusedError
from gunctl.specs.messages import Stop
from gunsim import ClearFaults, DuplicateFrames, Overheat, RandomPerson, ReorderNotifications
from logcapture import warnings_logged

from rig import FAMILIES, SPECS, plan_for

pytestmark = pytest.mark.looptime(noop_cycles=1)


@pytest.mark.parametrize("family", FAMILIES)
async def test_glute_completes_on_every_family(rig_factory, family: str) -> None:
    rig = await rig_factory(family)
    plan = plan_for("glute", family)
    await rig.start(plan)
    end = await rig.finish()
    assert end.type == "session_completed", rig.of("safety_stop")
    assert not rig.of("safety_stop")
    if "version" in SPECS[family].reports:
        assert rig.supervisor.firmware is not None  # read once, at connection
    await rig.settle(1.0)
    state = rig.device.state
    assert not state.running
    assert state.speed_ppm < 50
    # every step ran, each at its planned setpoint at the top of its hold
    assert len(rig.of("step_completed")) == len(plan.steps)
    top = (
        max(c.command.ppm for c in rig.device.commands if c.command.kind == "set_speed")
        if not SPECS[family].discrete
        else None
    )
    if top is not None:
        assert top == max(s.ppm for s in plan.steps)


async def test_stop_is_written_at_once_not_at_the_next_tick(rig_factory) -> None:
    rig = await rig_factory("gunctl-open")
    await rig.start(plan_for("glute", "gunctl-open"))
    await rig.until("step_started", since=0)
    await asyncio.sleep(5.01)  # mid-period: the next tick is 10 ms away
    asked = rig.clock.now()
    await rig.send("stop")
    stop = rig.device.commands[-1]
    assert stop.command == Stop()
    assert stop.at == asked  # no loop time passed: it did not wait for a tick
    end = await rig.finish(timeout=1)
    assert end.reason == "stopped"


async def test_pain_stops_at_once_and_waits_for_the_person(rig_factory) -> None:
    rig = await rig_factory("gunctl-open")
    await rig.start(plan_for("glute", "gunctl-open"))
    await rig.until("step_started", since=0)
    await asyncio.sleep(10.005)
    asked = rig.clock.now()
    await rig.send("pain_stop")
    assert rig.device.commands[-1].command == Stop()
    assert rig.device.commands[-1].at == asked
    await asyncio.sleep(60)
    assert not rig.device.state.running  # nothing starts again by itself
    assert [e.type for e in rig.events if e.type in ("pain_reported", "paused")] == [
        "pain_reported",
        "paused",
    ]
    await rig.send("resume")
    started = await rig.until("step_started")
    assert started.step.muscle != "gluteus-maximus"  # that muscle is done for the session


@pytest.mark.parametrize("family", ["gunctl-open", "basic-5level"])
async def test_keepalives_carry_stop_before_the_first_command_and_after_a_stop(
    rig_factory, family: str
) -> None:
    rig = await rig_factory(family)
    await asyncio.sleep(5)
    before = [c.command.kind for c in rig.device.commands]
    assert before
    assert set(before) <= {"stop", "version_request"}
    await rig.start(plan_for("glute", family))
    await rig.until("step_started", since=0)
    await asyncio.sleep(5)
    await rig.send("stop")
    stopped_at = rig.clock.now()
    await asyncio.sleep(10)
    after = [c.command.kind for c in rig.device.commands if c.at > stopped_at]
    period = SPECS[family].capabilities.keepalive.period_s
    assert len(after) >= int(10 / (period + 0.02)) - 1  # the firmware is still fed...
    assert set(after) == {"stop"}  # ...and every keepalive says stop
    assert not rig.device.state.running


async def test_nothing_resumes_after_a_safety_stop(rig_factory) -> None:
    rig = await rig_factory("gunctl-open")
    await rig.start(plan_for("glute", "gunctl-open"))
    await rig.until("step_started", since=0)
    await asyncio.sleep(3)
    rig.device.faults.inject(Overheat(temperature_c=66))
    await rig.finish(timeout=5)
    rig.device.faults.inject(ClearFaults())
    stopped_at = rig.clock.now()
    with pytest.raises(RequestRefusedError, match="no session"):
        await rig.send("resume")
    await asyncio.sleep(120)
    assert not [
        c for c in rig.device.commands if c.at > stopped_at and c.command.kind == "set_speed"
    ]
    assert not rig.device.state.running


async def test_a_second_start_while_running_is_refused(rig_factory) -> None:
    rig = await rig_factory("gunctl-open")
    plan = plan_for("glute", "gunctl-open")
    await rig.start(plan)
    with pytest.raises(RequestRefusedError, match="already running"):
        await rig.start(plan)


async def test_sciatica_full_in_virtual_time(rig_factory) -> None:
    rig = await rig_factory(
        "gunctl-open",
        rate_hz=20,
        device={"person": RandomPerson(seed=3, typical_n=20, too_hard_chance=0)},
    )
    plan = plan_for("sciatica-full", "gunctl-open")
    await rig.start(plan)
    end = await rig.finish()
    assert end.type == "session_completed", rig.of("safety_stop")
    assert rig.clock.now() == pytest.approx(plan.planned_s, abs=2)
    assert [e.step_index for e in rig.of("step_completed")] == list(range(len(plan.steps)))
    assert len(rig.of("cue")) == sum(1 for s in plan.steps if s.hold_s > 30)


async def test_reordered_and_duplicated_frames_never_overwrite_newer_telemetry(rig_factory) -> None:
    rig = await rig_factory("gunctl-open")
    await rig.start(plan_for("glute", "gunctl-open"))
    await rig.until("step_started", since=0)
    await asyncio.sleep(3)
    seen_seq: list[int] = []

    async def watch(seconds: float) -> None:
        for _ in range(round(seconds / 0.02)):
            await asyncio.sleep(0.02)
            seen_seq.append(rig.supervisor.telemetry.get("seq"))

    rig.device.faults.inject(ReorderNotifications(count=4))
    await watch(1.0)
    assert rig.supervisor.link_stats.out_of_order == 4  # the late half of each swapped pair
    rig.device.faults.inject(DuplicateFrames(count=3))
    await watch(1.0)
    assert rig.supervisor.link_stats.out_of_order == 4 + 3  # and each copy
    assert seen_seq == sorted(seen_seq)  # what the rules see never goes back in time
    assert not rig.of("safety_stop")


class PainToday(NoExposure):
    """An exposure with the left piriformis blocked by a pain stop earlier today."""

    def exposure_s(self, muscle: str, side: str) -> float:
        return 0.0

    def pain_blocks(self) -> dict[tuple[str, str], str]:
        return {("piriformis", "left"): "sharp pain at 14:02"}


async def test_a_plan_with_a_side_blocked_today_is_refused_and_a_plan_without_it_runs(
    rig_factory,
) -> None:
    rig = await rig_factory("gunctl-open", exposure=PainToday())
    with pytest.raises(
        RequestRefusedError, match=r"piriformis left is blocked until tomorrow \(sharp"
    ):
        await rig.start(plan_for("glute", "gunctl-open"))
    assert not rig.supervisor.running
    plan = plan_for("glute", "gunctl-open", blocked=PainToday().pain_blocks())
    assert [str(s) for s in plan.skipped] == ["piriformis left, sharp pain at 14:02"]
    assert ("piriformis", "left") not in {(s.muscle, s.side) for s in plan.steps}
    await rig.start(plan)
    assert rig.supervisor.running


async def test_a_battery_reading_out_of_range_is_counted_and_logged_not_used(rig_factory) -> None:
    rig = await rig_factory("basic-5level")  # the family read over the Battery Level characteristic
    await rig.start(plan_for("glute", "basic-5level"))
    await rig.until("step_started", since=0)
    before = rig.supervisor.telemetry.get("battery_pct")
    assert before is not None
    rig.device.read_battery = lambda: bytes([180])  # type: ignore[method-assign]
    with warnings_logged() as logs:
        await asyncio.sleep(31)  # one battery poll
    assert rig.supervisor.link_stats.decode_errors == 1
    assert rig.supervisor.telemetry.get("battery_pct") == before
    assert [e["reason"] for e in logs if e["event"] == "battery_read_rejected"] == [
        "bad_value: battery level 180 is above 100"
    ]
    assert not rig.of("safety_stop")
