"""The Supervisor driving a simulated gun through unmodified bleak and the fake BlueZ.

Everything here runs in real time over a private D-Bus, so each session is one
step of the glute protocol held for two seconds (a plan made in code; see
``blehost.short_plan``). What each family needs from the host is read from its
spec, so a new family is checked by the same test.
"""

from __future__ import annotations

import asyncio
import itertools

import pytest

from gunctl.devices import connect_ble
from gunctl.requests import Start
from gunctl.specs.codec import Codec
from gunctl.specs.loader import load_specs
from gunctl.specs.messages import Keepalive, SetLevel, SetSpeed, StatusRequest
from gunctl.specs.models import KeepaliveStrategy, TelemetryMode
from gunctl.specs.speed import setpoint_for
from gunsim import RefuseConnections

from blehost import SHORT, Guns, Watch, eventually, is_stop, short_plan

pytestmark = pytest.mark.ble

SPECS = load_specs()
FAMILIES = [pytest.param(name, id=name) for name in SPECS]


@pytest.mark.parametrize("family", FAMILIES)
async def test_a_session_runs_to_completion_over_bleak(guns: Guns, family: str) -> None:
    peripheral = guns.named[family]
    gun = peripheral.device
    spec = gun.spec
    caps = spec.capabilities
    plan = short_plan(spec)
    step = plan.steps[0]
    device = await connect_ble(peripheral.address, clock=guns.clock, timeout=SHORT)
    watch = Watch(device, gun)
    try:
        await device.supervisor.request(Start(plan))
        end = await watch.end(plan.planned_s + SHORT)
        assert end.type == "session_completed", end
        assert device.supervisor.last_safety_stop is None
        assert watch.of("safety_stop") == []
        await eventually(lambda: not gun.state.running, 1.0)
    finally:
        await watch.close()
        await device.aclose()

    # What the simulated firmware received: motion within the step's caps, ending in a stop.
    received = [record.command for record in gun.commands]
    limit = setpoint_for(step.cap, caps)
    if spec.discrete:
        levels = [c.level for c in received if isinstance(c, SetLevel)]
        assert step.level is not None
        assert levels
        assert max(levels) == step.level
        assert limit.level is not None
        assert step.level <= limit.level
    else:
        speeds = [c.ppm for c in received if isinstance(c, SetSpeed) and c.ppm > 0]
        assert speeds
        assert max(speeds) == step.ppm  # the hold reached the planned speed, and no more
        assert step.ppm <= min(limit.ppm, caps.max_ppm)
    motion = [c for c in received if isinstance(c, SetSpeed | SetLevel) or is_stop(c)]
    assert is_stop(motion[-1])
    assert not gun.state.running
    assert "watchdog" not in [e.kind for e in gun.events]
    assert not gun.rejected

    # What the family needs from the host, as its spec says.
    keepalive = caps.keepalive
    if keepalive.strategy is KeepaliveStrategy.FIXED:
        assert keepalive.period_s is not None
        sent = sum(isinstance(c, Keepalive) for c in received)
        assert sent >= 0.5 * step.hold_s / keepalive.period_s
    elif keepalive.strategy is KeepaliveStrategy.REPEAT_LAST:
        repeats = sum(
            isinstance(c, SetLevel | SetSpeed) and c == before
            for before, c in itertools.pairwise(received)
        )
        assert repeats >= 1  # the running command again, with nothing new to say
    if caps.telemetry.mode is TelemetryMode.POLL:
        polls = sum(isinstance(c, StatusRequest) for c in received)
        assert polls >= 0.5 * plan.planned_s / caps.telemetry.period_s
        if Codec(spec).with_response(StatusRequest()):
            assert peripheral.faults.writes_with_response >= polls
    else:
        assert not any(isinstance(c, StatusRequest) for c in received)
    if spec.gatt.battery is not None:
        assert peripheral.faults.reads >= 1  # Battery Level, through the Battery Service
        assert device.supervisor.telemetry.values["battery_pct"] == pytest.approx(
            gun.state.battery_pct, abs=1.0
        )
    assert device.supervisor.link_stats.decode_errors == 0
    assert device.supervisor.link_stats.frames > 0


@pytest.mark.parametrize(
    ("family", "device_notices_after", "firmware_stop"),
    [
        # the gun never notices: only its keepalive watchdog stops the motor
        pytest.param("gunctl-open", None, "watchdog", id="gunctl-open-watchdog"),
        # the gun notices after its supervision timeout, well before its watchdog would
        pytest.param("basic-5level", 0.3, "link_lost", id="basic-5level-supervision"),
    ],
)
async def test_an_abrupt_disconnect_mid_hold_is_a_safety_stop(
    guns: Guns, family: str, device_notices_after: float | None, firmware_stop: str
) -> None:
    peripheral = guns.named[family]
    gun = peripheral.device
    plan = short_plan(gun.spec, hold_s=10.0)
    device = await connect_ble(peripheral.address, clock=guns.clock, timeout=SHORT)
    watch = Watch(device, gun)
    try:
        await device.supervisor.request(Start(plan))
        await watch.until("step_started")
        await eventually(lambda: gun.state.running and gun.state.speed_ppm > 1000)

        dropped_at = guns.clock.now()
        peripheral.drop(device_notices_after=device_notices_after)
        stop = await watch.until("safety_stop", 1.0)
        end = await watch.end(1.0)
        after = watch.arrived[watch.events.index(stop)] - dropped_at
        print(f"\n{family}: link_lost safety stop {after * 1000:.1f} ms after the drop")
        assert stop.rule == "link_lost"
        assert stop.values == {"reason": "lost"}
        assert (end.type, end.reason) == ("session_aborted", "link_lost")
        assert after < 10 * device.supervisor.period  # one tick is 20 ms; this is loose
        await asyncio.wait_for(device.task, 1.0)
        assert device.supervisor.ended == "link lost"

        # The gun stops by itself, with nothing from the host reaching it.
        await eventually(lambda: not gun.state.running)
        assert [e.kind for e in gun.events][-1] == firmware_stop
        if device_notices_after is not None:
            assert gun.link_endings[-1][1] == "timeout"
        else:
            assert gun.connected  # it still believes in the link
    finally:
        await watch.close()
        await device.aclose()


async def test_refused_connections_are_overcome_by_connect_ble(guns: Guns) -> None:
    peripheral = guns.named["gunctl-open"]
    gun = peripheral.device
    gun.faults.inject(RefuseConnections(count=2))
    device = await asyncio.wait_for(
        connect_ble(peripheral.name, clock=guns.clock, timeout=SHORT), 10.0
    )
    try:
        assert device.connected
        assert (peripheral.faults.connect_calls, peripheral.faults.refused) == (3, 2)
        assert device.spec.name == "gunctl-open"
        # supervised: keepalives carrying stop reach the gun, and telemetry comes back
        await eventually(lambda: device.supervisor.link_stats.frames > 5)
        assert not gun.state.running
    finally:
        await device.aclose()
    await eventually(lambda: not gun.connected, 1.0)
    assert gun.link_endings[-1][1] == "requested"
