"""The simulated motor: first-order lag, slew limit, discrete levels, watchdog, long gaps."""

from __future__ import annotations

import math

import pytest

from gunctl.clock import Clock
from gunctl.links.base import Endpoint
from gunctl.specs.codec import checksum
from gunctl.specs.messages import SetSpeed, Status, StatusRequest
from gunctl.specs.models import ChecksumKind, DeviceSpec, KeepaliveStrategy, TelemetryMode
from gunsim import SimDevice
from gunsim.params import params_for
from gunsim.physics import Physics, approach

from simhost import SPECS, spec_params

pytestmark = pytest.mark.looptime(noop_cycles=1)


def step_for(spec: DeviceSpec) -> tuple[int, int]:
    """Two speeds a step between which the slew limit does not bend."""
    motor = params_for(spec.name).motor
    levels = spec.capabilities.levels_ppm
    if levels is not None:
        return levels[0], levels[1]
    assert spec.capabilities.speed is not None
    low = spec.capabilities.speed.min_ppm
    high = min(
        spec.capabilities.speed.max_ppm,
        low + int(0.8 * motor.slew_ppm_per_s * motor.time_constant_s),
    )
    return low, high


def test_approach_is_exponential_when_the_slew_allows() -> None:
    assert approach(0, 100, 1.0, 1.0, 1000) == pytest.approx(100 * (1 - math.exp(-1)))


def test_approach_ramps_at_the_slew_limit_then_settles() -> None:
    # a step of 1000 with tau 1 s wants 1000/s; the limit is 100/s
    assert approach(0, 1000, 2.0, 1.0, 100) == pytest.approx(200)
    # the ramp ends 100 short of the target (slew * tau), then the exponential runs
    assert approach(0, 1000, 9.0 + 1.0, 1.0, 100) == pytest.approx(1000 - 100 * math.exp(-1))


@pytest.mark.parametrize("spec", spec_params())
async def test_motor_follows_a_step_with_the_modelled_lag(
    spec: DeviceSpec, sim_device_factory, sim_host_factory
) -> None:
    device = await sim_device_factory(spec)
    host = await sim_host_factory(device)
    host.start_keepalive()
    tau = params_for(spec.name).motor.time_constant_s
    low, high = step_for(spec)

    await host.run_at(low)
    await host.clock.sleep(10 * tau)
    assert device.state.speed_ppm == pytest.approx(low, rel=0.002)

    await host.run_at(high)
    start = host.clock.now()
    await host.clock.sleep(tau)
    moved = (device.state.speed_ppm - low) / (high - low)
    assert moved == pytest.approx(1 - math.exp(-1), abs=0.01)  # 63 % of the way at one tau

    await host.clock.sleep_until(start + 5 * tau)
    assert device.state.speed_ppm == pytest.approx(high, rel=0.02)
    assert device.state.running


@pytest.mark.parametrize("spec", spec_params())
async def test_the_host_sees_the_speed_rise_where_the_spec_reports_it(
    spec: DeviceSpec, sim_device_factory, sim_host_factory
) -> None:
    if "speed_ppm" not in spec.documented_fields:
        pytest.skip(f"{spec.name} does not report its speed")
    device = await sim_device_factory(spec)
    host = await sim_host_factory(device)
    host.start_keepalive()
    low, _ = step_for(spec)
    await host.run_at(low)
    for _ in range(20):
        await host.clock.sleep(0.1)
        if spec.capabilities.telemetry.mode is TelemetryMode.POLL:
            await host.send(StatusRequest())
    speeds = [s.speed_ppm for s in host.statuses() if s.speed_ppm is not None]
    assert speeds, "no status frames"
    assert speeds == sorted(speeds)  # rising, never overshooting
    assert speeds[0] < 0.9 * low
    assert speeds[-1] == pytest.approx(low, rel=0.01)


@pytest.mark.parametrize("spec", spec_params())
async def test_a_large_step_is_slew_limited(
    spec: DeviceSpec, sim_device_factory, sim_host_factory
) -> None:
    motor = params_for(spec.name).motor
    top = spec.capabilities.max_ppm
    if top / motor.time_constant_s <= motor.slew_ppm_per_s:
        pytest.skip("the slew limit never binds on this family")
    device = await sim_device_factory(spec)
    host = await sim_host_factory(device)
    host.start_keepalive()
    await host.run_at(top)
    t = 0.5 * (top - motor.slew_ppm_per_s * motor.time_constant_s) / motor.slew_ppm_per_s
    await host.clock.sleep(t)
    assert device.state.speed_ppm == pytest.approx(motor.slew_ppm_per_s * t, abs=0.1)


async def test_a_discrete_device_snaps_to_its_levels(sim_device_factory) -> None:
    device = await sim_device_factory(SPECS["basic-5level"])
    device.physics.set_drive(2500)
    assert device.physics.drive_ppm == 2600


async def test_a_setpoint_above_the_firmware_maximum_is_ignored_and_counted(
    sim_device_factory, sim_host_factory
) -> None:
    spec = SPECS["gunctl-open"]
    device = await sim_device_factory(spec)
    host = await sim_host_factory(device)
    await host.send(SetSpeed(ppm=2000))
    too_fast = bytearray(host.codec.encode_command(SetSpeed(ppm=2000)))
    # re-encode the payload by hand with 4000 ppm and a valid checksum
    too_fast[3:5] = (4000).to_bytes(2, "little")
    too_fast[5:7] = checksum(ChecksumKind.CRC16_CCITT, bytes(too_fast[:5])).to_bytes(2, "little")
    await host.link.write(Endpoint.COMMAND, bytes(too_fast), with_response=True)
    assert device.state.setpoint_ppm == 2000
    assert [r.reason for r in device.rejected] == ["bad_value"]


@pytest.mark.parametrize("spec", spec_params())
async def test_the_watchdog_stops_the_motor_when_keepalives_stop(
    spec: DeviceSpec, sim_device_factory, sim_host_factory
) -> None:
    device = await sim_device_factory(spec)
    host = await sim_host_factory(device)
    host.start_keepalive()
    low, _ = step_for(spec)
    await host.run_at(low)
    await host.clock.sleep(5.0)
    assert device.state.running
    host.stop_keepalive()
    last_feed = device.commands[-1].at
    keepalive = spec.capabilities.keepalive

    if keepalive.strategy is KeepaliveStrategy.NONE:
        # no watchdog: the motor runs on with no traffic at all
        await host.clock.sleep(60.0)
        assert device.state.running
        assert device.state.speed_ppm == pytest.approx(low, rel=0.01)
        assert not device.events
        return

    assert keepalive.timeout_s is not None
    await host.clock.sleep_until(last_feed + keepalive.timeout_s - 0.01)
    assert device.state.running
    await host.clock.sleep_until(last_feed + keepalive.timeout_s + 0.001)
    state = device.state
    assert not state.running
    assert [e.kind for e in device.events] == ["watchdog"]
    assert device.events[0].at == pytest.approx(last_feed + keepalive.timeout_s, abs=1e-6)
    await host.clock.sleep(2.0)
    assert device.state.speed_ppm < 0.01 * low  # coasted down
    # the host sees it stop in the telemetry stream
    latest = host.statuses()[-1]
    assert latest.running is False
    if "faults" in spec.documented_fields and "watchdog" in device.firmware.supported_flags:
        assert "watchdog" in latest.faults


@pytest.mark.parametrize("spec", spec_params())
async def test_keepalives_keep_the_motor_running(
    spec: DeviceSpec, sim_device_factory, sim_host_factory
) -> None:
    device = await sim_device_factory(spec)
    host = await sim_host_factory(device)
    host.start_keepalive()
    low, _ = step_for(spec)
    await host.run_at(low)
    await host.clock.sleep(30.0)
    assert device.state.running
    assert not device.events
    if spec.capabilities.telemetry.mode is TelemetryMode.STREAM:
        assert all(isinstance(s, Status) for s in host.statuses())


def test_a_long_gap_costs_a_few_steps_and_lands_where_short_steps_do(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A gap in the clock (a host pause times a time scale; a test's loop leaving virtual
    # time) was one physics step per 50 ms of it: 20 minutes took about 70 ms of CPU.
    spec = SPECS["gunctl-open"]
    short, long = SimDevice(spec, clock=Clock()), SimDevice(spec, clock=Clock())
    for device in (short, long):
        device.physics.set_drive(2000)
        device.physics.battery_pct = 0.1  # empty, and browned out, within the 20 minutes
    for k in range(1, 24001):
        short.sync(k * 0.05)
    steps = 0
    step = Physics.step

    def counted(physics: Physics, dt: float, force_n: float) -> None:
        nonlocal steps
        steps += 1
        step(physics, dt, force_n)

    monkeypatch.setattr(Physics, "step", counted)
    long.sync(1200.0)
    assert steps < 200  # the ramp in short steps, then one to the battery's end, one after
    assert short.physics.browned_out
    assert long.physics.browned_out
    for field in ("speed_ppm", "temperature_c", "energy_wh", "current_a"):
        assert getattr(long.physics, field) == pytest.approx(
            getattr(short.physics, field), abs=1e-4
        )
