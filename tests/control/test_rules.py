"""Every safety rule, firing against the simulator with a real injected fault.

Each scenario runs twice: with every rule in force, the named rule must stop
the motor; with that one rule left out, it must not, which shows the test
is what catches the breach rather than something incidental.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from gunctl.clock import Clock
from gunctl.control.rules import Limits, RuleSet
from gunctl.control.supervisor import NoExposure, Supervisor
from gunctl.heads import Head
from gunctl.links.base import LinkError
from gunctl.links.sim import SimLink
from gunctl.profiles.plan import Plan
from gunctl.requests import SessionAction, Start
from gunsim import LowBattery, Overheat, ScriptedPerson, Silence, SimDevice, Stall, StuckMotor

from rig import SPECS, Rig, plan_for

pytestmark = pytest.mark.looptime(noop_cycles=1)


def one_step(protocol: str, spec: str, muscle: str | None = None, **changes: Any) -> Plan:
    """The first step (on ``muscle``, if given) alone, with ``changes`` forced past validation."""
    plan = plan_for(protocol, spec)
    first = next(s for s in plan.steps if muscle is None or s.muscle == muscle)
    step = first.model_copy(update={"index": 0, **changes})
    return plan.model_copy(update={"steps": [step]})


async def into_hold(rig: Rig, plan: Plan, seconds: float = 1.0) -> None:
    await rig.start(plan)
    await rig.until("step_started")
    await asyncio.sleep(plan.steps[0].ramp_s + seconds)


@dataclass
class Scenario:
    rule: str
    spec: str
    plan: Callable[[], Plan]
    act: Callable[[Rig], Awaitable[None]]
    device: dict[str, Any] | None = None
    supervisor: dict[str, Any] | None = None


class StaticExposure(NoExposure):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def exposure_s(self, muscle: str, side: str) -> float:
        return self.seconds


def inject(fault: Any, hold_s: float = 1.0) -> Callable[[Rig], Awaitable[None]]:
    async def act(rig: Rig) -> None:
        await asyncio.sleep(hold_s)
        rig.device.faults.inject(fault)

    return act


async def just_run(rig: Rig) -> None:
    return None


async def wrong_head(rig: Rig) -> None:
    await rig.until("head_change_required", since=0)
    rig.device.fit_head(Head.BALL)  # the step needs the bullet
    await rig.send("confirm_head")


SCENARIOS = [
    Scenario(
        "stale_telemetry",
        "gunctl-open",
        lambda: one_step("glute", "gunctl-open"),
        inject(Silence()),
    ),
    Scenario(
        "stale_telemetry",
        "theragun-gen4",
        lambda: one_step("glute", "theragun-gen4"),
        inject(Silence()),
    ),
    Scenario(
        "temperature",
        "gunctl-open",
        lambda: one_step("glute", "gunctl-open"),
        inject(Overheat(temperature_c=62)),
    ),
    Scenario(
        "force",
        "gunctl-open",
        lambda: one_step("glute", "gunctl-open", "piriformis"),
        just_run,
        device={"person": ScriptedPerson([(6.0, 20.0), (60.0, 80.0)])},
    ),
    Scenario("stall", "theragun-gen4", lambda: one_step("glute", "theragun-gen4"), inject(Stall())),
    Scenario(
        "battery",
        "gunctl-open",
        lambda: one_step("glute", "gunctl-open"),
        inject(LowBattery(pct=6)),
    ),
    Scenario(
        "battery",
        "basic-5level",
        lambda: one_step("glute", "basic-5level"),
        inject(LowBattery(pct=6)),
    ),
    Scenario(
        "device_fault",
        "basic-5level",
        lambda: one_step("glute", "basic-5level"),
        inject(Overheat(temperature_c=80)),
    ),
    Scenario(
        "hold_time",
        "gunctl-open",
        lambda: one_step("glute", "gunctl-open", hold_s=85, hold_max_s=40),
        just_run,
    ),
    Scenario(
        "muscle_session_time",
        "gunctl-open",
        lambda: one_step("glute", "gunctl-open", session_s_max=20),
        just_run,
    ),
    Scenario(
        "session_time",
        "gunctl-open",
        lambda: one_step("glute", "gunctl-open"),
        just_run,
        supervisor={"limits": Limits(session_max_s=30)},
    ),
    Scenario(
        "exposure_48h",
        "gunctl-open",
        lambda: one_step("glute", "gunctl-open", "piriformis"),
        just_run,
        supervisor={"exposure": StaticExposure(170)},
    ),
    Scenario(
        "head_mismatch",
        "gunctl-open",
        lambda: one_step("glute", "gunctl-open", "piriformis"),
        wrong_head,
    ),
]


@pytest.mark.parametrize("enabled", [True, False], ids=["rule-on", "rule-off"])
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: f"{s.rule}-{s.spec}")
async def test_rule_catches_a_real_breach(rig_factory, scenario: Scenario, enabled: bool) -> None:
    rules = RuleSet() if enabled else RuleSet.without(scenario.rule)
    rig = await rig_factory(
        scenario.spec, device=scenario.device, rules=rules, **(scenario.supervisor or {})
    )
    plan = scenario.plan()
    if scenario.act is wrong_head:
        rig.confirm_heads = False
        await rig.start(plan)
        await wrong_head(rig)
    else:
        await into_hold(rig, plan)
        await scenario.act(rig)
    end = await rig.finish(timeout=200)
    stops = [s.rule for s in rig.of("safety_stop")]
    if enabled:
        assert stops[:1] == [scenario.rule], rig.of("safety_stop")
        assert end.type == "session_aborted"
        stop = rig.of("safety_stop")[0]
        assert stop.values, "a stop says which values made it fire"
        # the stop frame went out at that very tick
        stop_frames = [
            c for c in rig.device.commands if c.command.kind == "stop" and c.at >= stop.at
        ]
        assert stop_frames
        assert stop_frames[0].at == pytest.approx(stop.at, abs=1e-6)
    else:
        assert scenario.rule not in stops


async def test_stale_telemetry_stops_within_its_limit(rig_factory) -> None:
    rig = await rig_factory("gunctl-open")
    await into_hold(rig, one_step("glute", "gunctl-open"))
    silenced_at = rig.clock.now()
    rig.device.faults.inject(Silence())
    stop = await rig.until("safety_stop", timeout=5)
    # the last frame came at most one telemetry period before the silence; then 250 ms; then a tick
    assert stop.at - silenced_at <= 0.25 + 0.04 + 0.02 + 1e-6
    assert stop.values["limit_s"] == 0.25


async def test_temperature_warns_before_it_stops(rig_factory) -> None:
    rig = await rig_factory("gunctl-open")
    await into_hold(rig, one_step("glute", "gunctl-open"))
    rig.device.faults.inject(Overheat(temperature_c=52))
    warning = await rig.until("warning", timeout=5)
    assert warning.rule == "temperature"
    await asyncio.sleep(5)
    assert not rig.of("safety_stop")
    assert rig.device.state.running


async def test_force_backs_off_before_it_stops(rig_factory) -> None:
    person = ScriptedPerson(
        [(6.0, 20.0), (1.0, 50.0), (60.0, 20.0)]
    )  # one second over the 35 N cap
    rig = await rig_factory("gunctl-open", device={"person": person})
    plan = one_step("glute", "gunctl-open", "piriformis")
    await into_hold(rig, plan, seconds=0)
    await asyncio.sleep(6.5 - rig.device.elapsed)
    during = [c.command.ppm for c in rig.device.commands if c.command.kind == "set_speed"][-1]
    assert during < plan.steps[0].ppm  # eased off while pressing too hard
    await asyncio.sleep(3)
    after = [c.command.ppm for c in rig.device.commands if c.command.kind == "set_speed"][-1]
    assert after == plan.steps[0].ppm  # back to the plan once the person eased off
    assert not rig.of("safety_stop")


@pytest.mark.parametrize("family", sorted(SPECS))
async def test_link_loss_ends_the_session_and_the_firmware_stops(rig_factory, family: str) -> None:
    # every family: theragun's status polls once made a write on the dead link hide the loss
    rig = await rig_factory(family)
    await into_hold(rig, one_step("glute", family))
    from gunsim import DropLink

    rig.device.faults.inject(DropLink(abrupt=True))
    end = await rig.finish(timeout=5)
    assert end.type == "session_aborted"
    assert end.reason == "link_lost"
    await asyncio.sleep(1)
    assert not rig.device.state.running
    assert rig.device.state.speed_ppm < 100


@pytest.mark.parametrize("enabled", [True, False], ids=["rule-on", "rule-off"])
async def test_stuck_motor_is_stopped_again_then_cut_off(rig_factory, enabled: bool) -> None:
    rules = RuleSet() if enabled else RuleSet.without("stuck_motor")
    rig = await rig_factory("gunctl-open", rules=rules)
    await into_hold(rig, one_step("glute", "gunctl-open"))
    rig.device.faults.inject(StuckMotor())
    await rig.send("stop")
    await asyncio.sleep(5)
    state = rig.device.state
    if enabled:
        stuck = [s for s in rig.of("safety_stop") if s.rule == "stuck_motor"]
        assert len(stuck) == 1  # said once, though the motor went on turning for a while
        stops_after_request = [c for c in rig.device.commands if c.command.kind == "stop"]
        assert len(stops_after_request) >= 2  # the request's stop, then the rule's second stop
        assert not state.connected  # the link was dropped so the firmware cut the motor
        assert state.speed_ppm < 100
    else:
        assert state.speed_ppm > 1000  # nothing else notices a motor that ignores stop


class FailingWrites:
    """A link that stays connected but whose writes start failing (a wedged GATT queue)."""

    def __init__(self, link: Any) -> None:
        self.link = link
        self.failing = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.link, name)

    async def write(self, endpoint: Any, data: bytes, *, with_response: bool) -> None:
        if self.failing:
            raise LinkError("write timed out")
        await self.link.write(endpoint, data, with_response=with_response)


async def test_a_write_failing_on_a_live_link_is_a_safety_stop() -> None:
    spec = SPECS["gunctl-open"]
    clock = Clock()
    async with SimDevice(spec, clock=clock) as sim:
        link = SimLink(sim)
        await link.connect()
        flaky = FailingWrites(link)
        supervisor = Supervisor(spec, flaky, clock=clock)  # type: ignore[arg-type]
        events = supervisor.bus.subscribe()
        task = asyncio.create_task(supervisor.run())
        plan = one_step("glute", "gunctl-open")
        await supervisor.request(Start(plan))
        sim.fit_head(plan.steps[0].head)
        await supervisor.request(SessionAction("confirm_head"))
        await asyncio.sleep(3)
        flaky.failing = True
        await asyncio.sleep(1)
        seen = events.pending()
        stops = [e for e in seen if e.type == "safety_stop"]
        assert stops[0].rule == "link_error"
        aborted = [e for e in seen if e.type == "session_aborted"]
        assert [a.reason for a in aborted] == ["link_error"]
        assert not task.done()  # the Supervisor carries on supervising
        await asyncio.sleep(2)
        assert not sim.state.running  # unfed, the firmware watchdog stopped the motor
        await supervisor.close()
        await task
