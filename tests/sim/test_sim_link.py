"""SimLink as a Link: connect, write, read, notifications, and how it ends."""

from __future__ import annotations

import asyncio

import pytest

from gunctl.links.base import FANOUT_BOUND, ConnectError, Endpoint, Link, LinkError, LinkLostError
from gunctl.links.sim import SimLink
from gunctl.specs.codec import Codec, decode_battery_level
from gunctl.specs.messages import SetSpeed, Status, Stop

from simhost import SPECS

pytestmark = pytest.mark.looptime(noop_cycles=1)


async def test_sim_link_is_a_link(sim_device_factory) -> None:
    device = await sim_device_factory(SPECS["gunctl-open"])
    assert isinstance(SimLink(device), Link)


async def test_a_requested_disconnect_ends_notifications(
    sim_device_factory, sim_host_factory
) -> None:
    device = await sim_device_factory(SPECS["gunctl-open"])
    host = await sim_host_factory(device)
    await host.send(SetSpeed(ppm=2000))
    await host.clock.sleep(1.01)
    assert len(host.statuses()) == 25  # 25 Hz
    await host.link.disconnect()
    assert await host.link.wait_disconnected() == "requested"
    assert not host.link.connected
    # the firmware stops the motor when the link goes
    assert not device.state.running
    with pytest.raises(LinkLostError):
        await host.send(SetSpeed(ppm=2000))
    async for _ in host.link.notifications():
        pytest.fail("a closed link has no notifications")


async def test_the_link_reconnects_after_a_disconnect(sim_device_factory) -> None:
    device = await sim_device_factory(SPECS["gunctl-open"])
    link = SimLink(device)
    await link.connect()
    await link.disconnect()
    await link.connect()
    assert link.connected
    assert device.connected
    await link.disconnect()


async def test_a_second_central_is_refused(sim_device_factory) -> None:
    device = await sim_device_factory(SPECS["gunctl-open"])
    first, second = SimLink(device), SimLink(device)
    await first.connect()
    with pytest.raises(ConnectError):
        await second.connect()
    await first.disconnect()


async def test_a_switched_off_device_refuses_connections(sim_clock) -> None:
    from gunsim import SimDevice

    with pytest.raises(ConnectError):
        await SimLink(SimDevice(SPECS["gunctl-open"], clock=sim_clock)).connect()


async def test_battery_is_read_where_the_spec_has_the_service(
    sim_device_factory, sim_host_factory
) -> None:
    basic = await sim_host_factory(await sim_device_factory(SPECS["basic-5level"]))
    assert decode_battery_level(await basic.link.read(Endpoint.BATTERY)) == 100
    open_ = await sim_host_factory(await sim_device_factory(SPECS["gunctl-open"], seed=1))
    with pytest.raises(LinkError):
        await open_.link.read(Endpoint.BATTERY)


async def test_received_at_is_clock_time(sim_device_factory, sim_host_factory) -> None:
    device = await sim_device_factory(SPECS["gunctl-open"])
    host = await sim_host_factory(device)
    await host.clock.sleep(0.21)
    times = [n.received_at for n in host.notes]
    assert times == pytest.approx([0.04, 0.08, 0.12, 0.16, 0.2], abs=1e-5)
    assert all(isinstance(s, Status) for s in host.statuses())


async def test_a_listener_that_falls_behind_keeps_the_newest_frames_and_the_end(
    sim_device_factory, sim_clock
) -> None:
    device = await sim_device_factory(SPECS["gunctl-open"])
    link = SimLink(device)
    await link.connect()
    slow = link.notifications()  # reads nothing until the link has closed
    every: list[bytes] = []

    async def keep_up() -> None:
        async for note in link.notifications():
            every.append(note.data)

    reader = asyncio.create_task(keep_up())
    await sim_clock.sleep(10.01)  # 250 frames at 25 Hz
    await link.disconnect()
    await reader  # the listener that kept up has every frame, then the end
    held = [note.data async for note in slow]
    assert len(every) > 2 * FANOUT_BOUND
    assert len(held) == FANOUT_BOUND - 1  # the end of the stream took the last place
    assert held == every[-len(held) :]  # the newest frames, in order
    assert link.coalesced == len(every) - len(held)


async def test_a_connection_interval_carries_frames_only_at_connection_events(
    sim_device_factory, sim_clock
) -> None:
    interval = 0.03
    device = await sim_device_factory(SPECS["gunctl-open"])
    link = SimLink(device, interval_s=interval)
    await link.connect()
    anchor = sim_clock.now()
    arrivals: list[float] = []

    async def listen() -> None:
        async for note in link.notifications():
            arrivals.append(note.received_at - anchor)

    listener = asyncio.create_task(listen())
    await sim_clock.sleep(0.011)  # between two events
    asked = sim_clock.now()
    await link.write(
        Endpoint.COMMAND, Codec(SPECS["gunctl-open"]).encode_command(Stop()), with_response=True
    )
    taken = device.commands[-1].at
    assert taken - anchor == pytest.approx(interval)  # the next event, 19 ms on
    assert sim_clock.now() - taken == pytest.approx(interval)  # the acknowledgement, one more
    assert taken > asked
    await sim_clock.sleep(1.0)
    await link.disconnect()
    await listener
    assert arrivals  # the device streams telemetry at 25 Hz...
    for at in arrivals:  # ...and each frame lands at a connection event
        assert at / interval == pytest.approx(round(at / interval), abs=1e-6)
