"""The person's load, firmware timers and cutoffs over long runs, and reproducibility."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from functools import partial

import pytest

from gunctl.clock import Clock
from gunctl.specs.messages import SetSpeed
from gunsim import CorruptFrames, RandomPerson, ScriptedPerson, SimDevice

from simhost import SPECS, Host, spec_params

pytestmark = pytest.mark.looptime(noop_cycles=1)


def test_a_scripted_person_is_piecewise_constant() -> None:
    person = ScriptedPerson([(2.0, 0.0), (3.0, 40.0), (1.0, 10.0)])
    assert [person.force_at(t) for t in (0.0, 1.9, 2.0, 4.9, 5.0, 5.5, 6.0, 100.0)] == [
        0.0, 0.0, 40.0, 40.0, 10.0, 10.0, 0.0, 0.0,
    ]  # fmt: skip
    assert person.next_change(0.5) == 2.0
    assert person.next_change(5.2) == 6.0
    assert person.next_change(6.0) is None
    again = ScriptedPerson([(1.0, 5.0), (1.0, 0.0)], repeat=True)
    assert again.force_at(10.5) == 5.0
    assert again.force_at(11.5) == 0.0


def test_a_random_person_is_reproducible_and_sometimes_presses_too_hard() -> None:
    a, b, c = RandomPerson(7), RandomPerson(7), RandomPerson(8)
    times = [i * 0.25 for i in range(4 * 1800)]
    forces = [a.force_at(t) for t in times]
    assert forces == [b.force_at(t) for t in times]
    assert forces != [c.force_at(t) for t in times]
    assert 0.0 in forces  # lifts the gun between spots
    assert max(forces) == pytest.approx(150.0, rel=0.1)  # pressed too hard at least once
    held = [f for f in forces if f > 0]
    assert 20 < sorted(held)[len(held) // 2] < 60  # mostly a comfortable lean


@pytest.mark.parametrize(
    "make",
    [partial(RandomPerson, 7), partial(ScriptedPerson, [(0.4, 20.0), (0.6, 0.0)], repeat=True)],
    ids=["random", "repeating"],
)
def test_a_person_who_keeps_going_holds_no_more_memory_after_ten_hours_than_after_one(
    make: Callable[[], RandomPerson | ScriptedPerson],
) -> None:
    """A daemon's simulated guns run for days: the segments time has passed are let go."""
    person = make()
    tracemalloc.start()
    try:
        for t in range(3600):
            person.force_at(float(t))
        after_an_hour = tracemalloc.get_traced_memory()[0]
        for t in range(3600, 36000):
            person.force_at(float(t))
            person.next_change(float(t))
        after_ten = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after_ten - after_an_hour < 10_000  # kept every segment: 2.7 to 3.8 MB more
    with pytest.raises(ValueError, match="forgotten"):
        person.force_at(10.0)  # asked about a time it let go: an error, not a wrong force


@pytest.mark.parametrize("spec", spec_params())
async def test_the_load_pulls_speed_down_and_current_up(
    spec, sim_device_factory, sim_host_factory
) -> None:
    stall = spec.capabilities.stall_force_n
    assert stall is not None
    person = ScriptedPerson([(3.0, 0.0), (3.0, stall / 4), (3.0, 0.0)])
    device = await sim_device_factory(spec, person=person)
    host = await sim_host_factory(device)
    host.start_keepalive()
    top = spec.capabilities.max_ppm
    await host.run_at(top)
    await host.clock.sleep(2.9)
    free = device.state
    await host.clock.sleep(3.0)
    loaded = device.state
    assert loaded.force_n == stall / 4
    assert loaded.speed_ppm == pytest.approx(0.75 * top, rel=0.01)
    assert loaded.current_a > free.current_a + 0.2 * device.params.motor.stall_current_a
    if "force_n" in spec.documented_fields:
        seen = [s for s in host.statuses() if s.force_n]
        assert seen
        assert seen[0].force_n == pytest.approx(stall / 4, abs=0.1)
        assert seen[-1].current_a == pytest.approx(loaded.current_a, abs=0.01)
    await host.clock.sleep(3.0)
    assert device.state.speed_ppm == pytest.approx(top, rel=0.01)  # free again


@pytest.mark.parametrize("spec", spec_params())
async def test_auto_off_stops_the_motor(spec, sim_device_factory, sim_host_factory) -> None:
    device = await sim_device_factory(spec)
    host = await sim_host_factory(device)
    host.start_keepalive()
    await host.run_at(spec.capabilities.max_ppm)
    started = device.commands[-1].at
    auto_off = spec.capabilities.auto_off_s
    if auto_off is None:
        await host.clock.sleep(1200.0)
        assert device.state.running
        return
    await host.clock.sleep_until(started + auto_off - 0.01)
    assert device.state.running
    await host.clock.sleep_until(started + auto_off + 0.01)
    # (a repeat-last keepalive may start it again right after: that is the host's doing)
    assert [e.kind for e in device.events] == ["auto_off"]
    assert device.events[0].at == pytest.approx(started + auto_off)


@pytest.mark.parametrize("spec", spec_params())
async def test_pressing_hard_for_long_heats_the_motor_into_the_cutoff(
    spec, sim_device_factory, sim_host_factory
) -> None:
    stall = spec.capabilities.stall_force_n
    limit = spec.capabilities.temperature_limit_c
    assert stall is not None
    device = await sim_device_factory(spec, person=ScriptedPerson([(3600.0, 0.9 * stall)]))
    host = await sim_host_factory(device)
    host.start_keepalive()
    await host.run_at(spec.capabilities.max_ppm)
    if limit is None:
        await host.clock.sleep(600.0)
        assert device.state.running  # no cutoff: the host has to watch time and speed
        assert device.state.temperature_c > 70
        return
    status = await host.wait_for(lambda s: "overtemp" in s.faults, within_s=600.0)
    assert status.running is False
    kinds = [e.kind for e in device.events]
    assert kinds[0] == "thermal_cutoff"
    assert set(kinds[1:]) <= {"refused"}  # a repeat-last keepalive asks again: refused while hot
    assert 20.0 < device.events[0].at < 300.0  # a minute or two of hard pressing
    assert device.state.temperature_c == pytest.approx(limit, abs=1.0)


async def test_ten_virtual_minutes_of_streaming(sim_device_factory, sim_host_factory) -> None:
    spec = SPECS["gunctl-open"]
    device = await sim_device_factory(spec, person=RandomPerson(3))
    host = await sim_host_factory(device)
    host.start_keepalive()
    await host.send(SetSpeed(ppm=2400))
    await host.clock.sleep(600.01)
    statuses = host.statuses()
    assert len(statuses) == 15000  # 25 Hz for 600 s
    assert [s.seq for s in statuses] == [i % 0x10000 for i in range(15000)]
    assert device.state.battery_pct < 100


async def record(seed: int, spec_name: str) -> list[tuple[float, bytes]]:
    device = SimDevice(SPECS[spec_name], clock=Clock(), seed=seed, person=RandomPerson(seed))
    async with device:
        device.faults.inject(CorruptFrames(probability=0.05))
        host = Host(device)
        await host.connect()
        host.start_keepalive()
        await host.run_at(SPECS[spec_name].capabilities.max_ppm)
        for _ in range(300):
            await host.tick()
        await host.close()
    return [(round(n.received_at - device.origin, 6), n.data) for n in host.notes]


@pytest.mark.parametrize("spec_name", list(SPECS))
async def test_the_same_seed_gives_the_same_bytes(spec_name: str) -> None:
    first = await record(5, spec_name)
    assert len(first) > 250
    assert await record(5, spec_name) == first
    if spec_name == "gunctl-open":  # the only family whose status carries the force
        assert await record(6, spec_name) != first
