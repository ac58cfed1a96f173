"""Every fault kind, seen from the host side through SimLink."""

from __future__ import annotations

import pytest

from gunctl.links.base import ConnectError, Endpoint
from gunctl.links.sim import SimLink
from gunctl.specs.codec import DecodeError, DecodeFailure, decode_battery_level
from gunctl.specs.messages import SetSpeed, Status, Stop
from gunctl.specs.models import DeviceSpec
from gunsim import (
    ClearFaults,
    CorruptFrames,
    DelayNotifications,
    DropLink,
    DuplicateFrames,
    LowBattery,
    Overheat,
    RefuseConnections,
    ReorderNotifications,
    Silence,
    SlowAcks,
    Stall,
    StuckMotor,
    TruncateFrames,
)

from simhost import SPECS, spec_params

pytestmark = pytest.mark.looptime(noop_cycles=1)


def first_speed(spec: DeviceSpec) -> int:
    levels = spec.capabilities.levels_ppm
    if levels is not None:
        return levels[2]
    assert spec.capabilities.speed is not None
    return spec.capabilities.speed.min_ppm


async def running_host(spec, sim_device_factory, sim_host_factory, **kwargs):
    device = await sim_device_factory(spec, **kwargs)
    host = await sim_host_factory(device)
    host.start_keepalive()
    await host.run_at(first_speed(spec))
    await host.clock.sleep(2.01)  # off the telemetry ticks, so no frame is half-way
    return device, host


async def frames_after(host, count: int) -> list[bytes]:
    """The raw bytes of the next ``count`` notifications."""
    seen = len(host.notes)
    while len(host.notes) < seen + count:
        await host.tick()
    return [n.data for n in host.notes[seen : seen + count]]


@pytest.mark.parametrize("spec", spec_params())
async def test_corrupted_checksums_fail_to_decode_then_frames_recover(
    spec, sim_device_factory, sim_host_factory
) -> None:
    device, host = await running_host(spec, sim_device_factory, sim_host_factory)
    device.faults.inject(CorruptFrames(count=3, checksum_only=True))
    frames = await frames_after(host, 5)
    for data in frames[:3]:
        with pytest.raises(DecodeError) as caught:
            host.codec.decode_report(data)
        assert caught.value.reason is DecodeFailure.BAD_CHECKSUM
    for data in frames[3:]:
        assert isinstance(host.codec.decode_report(data), Status)


@pytest.mark.parametrize("spec", spec_params())
async def test_corrupted_bytes_truncated_frames_never_decode(
    spec, sim_device_factory, sim_host_factory
) -> None:
    device, host = await running_host(spec, sim_device_factory, sim_host_factory)
    device.faults.inject(CorruptFrames(count=10))
    bad = await frames_after(host, 10)
    device.faults.inject(TruncateFrames(count=10))
    bad += await frames_after(host, 10)
    for data in bad:
        with pytest.raises(DecodeError):
            host.codec.decode_report(data)
    assert isinstance(host.codec.decode_report((await frames_after(host, 1))[0]), Status)


@pytest.mark.parametrize("spec", spec_params())
async def test_a_probability_corrupts_about_that_share(
    spec, sim_device_factory, sim_host_factory
) -> None:
    device, host = await running_host(spec, sim_device_factory, sim_host_factory)
    device.faults.inject(CorruptFrames(probability=0.25))
    frames = await frames_after(host, 400)
    bad = 0
    for data in frames:
        try:
            host.codec.decode_report(data)
        except DecodeError:
            bad += 1
    assert 60 <= bad <= 140


@pytest.mark.parametrize("spec", spec_params())
async def test_duplicated_frames_arrive_twice(spec, sim_device_factory, sim_host_factory) -> None:
    device, host = await running_host(spec, sim_device_factory, sim_host_factory)
    device.faults.inject(DuplicateFrames(count=2))
    frames = await frames_after(host, 6)
    assert frames[0] == frames[1]
    assert frames[2] == frames[3]
    assert frames[3] != frames[4] or spec.name != "gunctl-open"  # seq moves on


async def test_reordered_frames_arrive_swapped(sim_device_factory, sim_host_factory) -> None:
    device, host = await running_host(SPECS["gunctl-open"], sim_device_factory, sim_host_factory)
    device.faults.inject(ReorderNotifications(count=2))
    frames = await frames_after(host, 6)
    seqs = [host.codec.decode_report(f).seq for f in frames]
    s = seqs[1]
    assert seqs == [s + 1, s, s + 3, s + 2, s + 4, s + 5]


@pytest.mark.parametrize("spec", spec_params())
async def test_silence_means_no_notifications_while_connected(
    spec, sim_device_factory, sim_host_factory
) -> None:
    device, host = await running_host(spec, sim_device_factory, sim_host_factory)
    start = host.clock.now()
    device.faults.inject(Silence(duration_s=3.0))
    while host.clock.now() < start + 3.0:
        await host.tick()
    assert host.link.connected
    assert [n for n in host.notes if n.received_at > start] == []
    assert device.state.running  # the motor neither knows nor cares
    await host.tick()
    await host.tick()
    assert [n for n in host.notes if n.received_at > start + 3.0]


@pytest.mark.parametrize("spec", spec_params())
async def test_delayed_notifications_arrive_late_in_order(
    spec, sim_device_factory, sim_host_factory
) -> None:
    device, host = await running_host(spec, sim_device_factory, sim_host_factory)
    device.faults.inject(DelayNotifications(delay_s=0.5, duration_s=2.0))
    start = host.clock.now()
    while host.clock.now() < start + 3.0:
        await host.tick()
    arrived = [n.received_at - start for n in host.notes if n.received_at > start]
    assert arrived, "nothing arrived"
    assert min(arrived) >= 0.5 - 1e-6  # nothing in the first half second
    assert arrived == sorted(arrived)
    if spec.name == "gunctl-open":
        seqs = [host.codec.decode_report(n.data).seq for n in host.notes]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none lost, none swapped


@pytest.mark.parametrize("spec", spec_params())
async def test_an_abrupt_drop_is_lost_and_stops_the_motor(
    spec, sim_device_factory, sim_host_factory
) -> None:
    device, host = await running_host(spec, sim_device_factory, sim_host_factory)
    device.faults.inject(DropLink(abrupt=True))
    assert await host.link.wait_disconnected() == "lost"
    assert not host.link.connected
    assert not device.state.running
    assert device.events[-1].kind == "link_lost"


async def test_a_clean_drop_is_remote(sim_device_factory, sim_host_factory) -> None:
    device, host = await running_host(SPECS["gunctl-open"], sim_device_factory, sim_host_factory)
    device.faults.inject(DropLink(abrupt=False))
    assert await host.link.wait_disconnected() == "remote"


async def test_refused_connections_fail_then_succeed(sim_device_factory) -> None:
    device = await sim_device_factory(SPECS["gunctl-open"])
    device.faults.inject(RefuseConnections(count=3))
    link = SimLink(device)
    for _ in range(3):
        with pytest.raises(ConnectError):
            await link.connect()
    await link.connect()
    assert link.connected
    await link.disconnect()


@pytest.mark.parametrize("spec", spec_params())
async def test_slow_acks_delay_writes_with_response(
    spec, sim_device_factory, sim_host_factory
) -> None:
    device, host = await running_host(spec, sim_device_factory, sim_host_factory)
    device.faults.inject(SlowAcks(delay_s=0.3))
    before = host.clock.now()
    await host.send(Stop())
    took = host.clock.now() - before
    assert not device.state.running  # the firmware acted at once
    stops = [c.at for c in device.commands if isinstance(c.command, Stop)]
    assert stops == [pytest.approx(before, abs=1e-6)]
    expected = 0.3 if host.codec.with_response(Stop()) else 0.0
    assert took == pytest.approx(expected, abs=1e-6)


async def test_stuck_motor_keeps_turning_after_stop_until_the_link_drops(
    sim_device_factory, sim_host_factory
) -> None:
    spec = SPECS["gunctl-open"]
    device, host = await running_host(spec, sim_device_factory, sim_host_factory)
    device.faults.inject(StuckMotor())
    await host.send(Stop())
    await host.clock.sleep(2.0)
    status = host.statuses()[-1]
    assert status.running is False
    assert status.speed_ppm == pytest.approx(1200, rel=0.01)
    assert "motor" in status.faults
    host.stop_keepalive()
    await host.clock.sleep(5.0)  # past the watchdog: still turning
    assert device.state.speed_ppm == pytest.approx(1200, rel=0.01)
    device.faults.inject(DropLink())
    await host.clock.sleep(2.0)
    assert device.state.speed_ppm < 10


@pytest.mark.parametrize("spec", spec_params())
async def test_overheat_trips_the_thermal_cutoff(
    spec, sim_device_factory, sim_host_factory
) -> None:
    limit = spec.capabilities.temperature_limit_c
    device, host = await running_host(spec, sim_device_factory, sim_host_factory)
    device.faults.inject(Overheat(temperature_c=(limit or 70) + 2))
    if limit is None:
        await host.clock.sleep(1.0)
        assert device.state.running  # no cutoff in this firmware
        return
    status = await host.wait_for(lambda s: "overtemp" in s.faults, within_s=1.0)
    assert status.running is False
    assert [e.kind for e in device.events] == ["thermal_cutoff"]
    await host.run_at(first_speed(spec))  # refused while hot
    assert not device.state.running
    assert device.events[-1].kind == "refused"


@pytest.mark.parametrize("spec", spec_params())
async def test_a_jammed_rotor_stalls_and_the_firmware_cuts_it(
    spec, sim_device_factory, sim_host_factory
) -> None:
    device, host = await running_host(spec, sim_device_factory, sim_host_factory)
    device.faults.inject(Stall())
    jammed_at = host.clock.now()
    await host.clock.sleep(1.0)
    state = device.state
    assert state.stalled
    assert state.speed_ppm < 0.01 * first_speed(spec)
    assert state.current_a == pytest.approx(device.params.motor.stall_current_a)
    if "stall" in device.firmware.supported_flags:
        assert "stall" in host.statuses()[-1].faults or host.polls
    await host.clock.sleep(device.params.firmware.stall_cutoff_s)
    # (a repeat-last keepalive may start it again later: that is the host's doing)
    cutoffs = [e for e in device.events if e.kind == "stall_cutoff"]
    assert cutoffs[0].at == pytest.approx(jammed_at + device.params.firmware.stall_cutoff_s)
    device.faults.inject(ClearFaults())
    assert not device.state.stalled


@pytest.mark.parametrize("spec", spec_params())
async def test_low_battery_shows_where_the_device_reports_it(
    spec, sim_device_factory, sim_host_factory
) -> None:
    device, host = await running_host(spec, sim_device_factory, sim_host_factory)
    device.faults.inject(LowBattery(pct=6))
    await host.tick()
    await host.tick()
    if "battery_pct" in spec.documented_fields:
        status = host.statuses()[-1]
        assert status.battery_pct == 6
        assert "low_battery" in status.faults
    if spec.gatt.battery is not None:
        assert decode_battery_level(await host.link.read(Endpoint.BATTERY)) == 6
    assert "low_battery" in device.state.faults
    device.faults.inject(LowBattery(pct=0))
    assert not device.state.running
    assert device.events[-1].kind == "brownout"


async def test_faults_are_scripted_in_time(sim_device_factory, sim_host_factory) -> None:
    device, host = await running_host(SPECS["gunctl-open"], sim_device_factory, sim_host_factory)
    device.faults.script(
        [(5.0, {"kind": "silence", "duration_s": 1.0}), (8.0, {"kind": "drop_link"})]
    )
    assert await host.link.wait_disconnected() == "lost"
    assert host.clock.now() == pytest.approx(device.origin + 8.0, abs=1e-6)
    times = [n.received_at - device.origin for n in host.notes]
    assert not [t for t in times if 5.0 < t < 6.0]
    assert [t for t in times if 6.0 < t < 8.0]
    assert [k.kind for _, k in device.faults.injected] == ["silence", "drop_link"]


async def test_a_written_frame_with_a_bad_value_is_not_obeyed(
    sim_device_factory, sim_host_factory
) -> None:
    device = await sim_device_factory(SPECS["theragun-gen4"])
    host = await sim_host_factory(device)
    frame = bytearray(host.codec.encode_command(SetSpeed(ppm=2000)))
    frame[4:6] = (9000).to_bytes(2, "big")
    frame[1] = sum(frame[2:]) & 0xFF
    await host.link.write(Endpoint.COMMAND, bytes(frame), with_response=True)
    assert not device.state.running
    assert [r.reason for r in device.rejected] == ["bad_value"]
