"""gunctl's BLE link through unmodified bleak and bleak-retry-connector, against the fake BlueZ."""

from __future__ import annotations

import asyncio

import pytest
from dbus_fast import BusType, Message
from dbus_fast.aio import MessageBus

from gunctl.daemon import DeviceSlot
from gunctl.devices import connect_ble
from gunctl.errors import DeviceNotFoundError
from gunctl.links.base import ConnectError, Endpoint, LinkError, LinkLostError
from gunctl.links.ble import BleakLink
from gunctl.links.scan import find, open_ble_link, scan
from gunctl.mqtt.payloads import device_state
from gunctl.specs.codec import DecodeError, decode_battery_level
from gunctl.specs.loader import load_specs
from gunctl.specs.messages import SetSpeed
from gunsim import CorruptFrames, DropLink, RefuseConnections
from gunsim.bluez import ABORT_BY_LOCAL, CANCELED, CONNECTION_ABORTED
from gunsim.bluez.objects import ADAPTER_PATH

from blehost import SHORT, BleHost, Guns, eventually, run_command

pytestmark = pytest.mark.ble

SPECS = load_specs()
FAMILIES = [pytest.param(name, id=name) for name in SPECS]


async def test_scan_recognises_every_gun_by_name_and_by_service(guns: Guns) -> None:
    found = {f.address: f for f in await scan(1.0)}
    for family, peripheral in guns.named.items():
        hit = found[peripheral.address]
        assert (hit.name, hit.spec) == (peripheral.name, family)
        assert hit.match in {"exact_name", "wildcard_name"}
        assert hit.rssi < 0
    for family, peripheral in guns.anonymous.items():
        hit = found[peripheral.address]
        assert (hit.spec, hit.match) == (family, "service")


async def test_manufacturer_data_is_advertised_and_matched(guns: Guns) -> None:
    spec = SPECS["basic-5level"]
    peripheral = await guns.add(spec, name="Budget Gun", advertise_services=False)
    found = {f.address: f for f in await scan(1.0)}
    hit = found[peripheral.address]
    assert (hit.spec, hit.match) == ("basic-5level", "manufacturer_data")
    assert hit.manufacturer_data[0xFFFF].startswith("4d47")


async def test_open_ble_link_by_name_or_address_matches_the_spec(guns: Guns) -> None:
    peripheral = guns.named["gunctl-open"]
    link, spec = await open_ble_link(peripheral.name, clock=guns.clock, timeout=SHORT)
    assert (link.address, spec.name, link.connected) == (peripheral.address, "gunctl-open", False)
    link, spec = await open_ble_link(
        peripheral.address.lower(), "gunctl-open", clock=guns.clock, timeout=SHORT
    )
    assert link.address == peripheral.address
    with pytest.raises(DeviceNotFoundError):
        await find("no-such-gun", timeout=0.5)


async def test_the_link_reports_the_signal_strength_it_was_advertised_with(guns: Guns) -> None:
    peripheral = await guns.add(SPECS["gunctl-open"], name="Far Gun", rssi=-78)
    link, _ = await open_ble_link(peripheral.address, clock=guns.clock, timeout=SHORT)
    assert link.rssi is not None
    assert abs(link.rssi - (-78)) <= 3  # each advertisement varies by a few dBm
    assert BleakLink(link.ble_device, link.spec, clock=guns.clock).rssi is None  # never heard
    device = await connect_ble(peripheral.address, clock=guns.clock, timeout=SHORT)
    try:
        assert device.ble is device.link
        assert device.rssi is not None
        assert abs(device.rssi - (-78)) <= 3
        slot = DeviceSlot(device.device_id, "ble", peripheral.address, device.spec, device)
        assert device_state(slot)["rssi"] == device.rssi
    finally:
        await device.aclose()


@pytest.mark.parametrize("family", FAMILIES)
async def test_telemetry_reflects_the_command_written(guns: Guns, family: str) -> None:
    peripheral = guns.named[family]
    link, spec = await open_ble_link(peripheral.address, clock=guns.clock, timeout=SHORT)
    host = BleHost(link, spec)
    await host.start()
    try:
        assert link.connected
        assert peripheral.device.connected
        host.keep_alive()
        await host.send(run_command(spec))
        status = await host.wait_for(lambda s: s.running)
        if spec.discrete:
            assert status.level == 3
        else:  # the motor spins up, and the telemetry says so
            await host.wait_for(lambda s: (s.speed_ppm or 0) > 1000)
        assert peripheral.device.state.running
        assert not host.decode_errors
        if spec.gatt.battery is not None:
            assert 0 <= decode_battery_level(await link.read(Endpoint.BATTERY)) <= 100
        else:
            with pytest.raises(LinkError):
                await link.read(Endpoint.BATTERY)
    finally:
        await host.close()
    assert await link.wait_disconnected() == "requested"
    await asyncio.sleep(0.05)
    assert not peripheral.device.connected


async def test_abrupt_radio_loss_is_reported_and_the_firmware_watchdog_stops_the_motor(
    guns: Guns,
) -> None:
    peripheral = guns.named["gunctl-open"]
    device = peripheral.device
    link = BleakLink(await find(peripheral.address, SHORT), device.spec, clock=guns.clock)
    host = BleHost(link, device.spec)
    await host.start()
    host.keep_alive()
    await host.send(SetSpeed(ppm=2400))
    await host.wait_for(lambda s: s.running)
    stream = link.notifications()

    # The radio link breaks; the gun does not notice (no supervision timeout here).
    peripheral.drop(device_notices_after=None)
    assert await asyncio.wait_for(link.wait_disconnected(), 1.0) == "lost"
    lost_at = guns.clock.now()
    assert not link.connected
    async with asyncio.timeout(1.0):  # the stream ends instead of hanging
        frames = [n async for n in stream]
    assert all(n.received_at <= lost_at for n in frames)  # only what came before the loss
    with pytest.raises(LinkLostError):
        await host.send(SetSpeed(ppm=2000))

    # Nothing feeds the firmware's watchdog any more: it stops the motor by itself.
    await eventually(lambda: not device.state.running)
    assert [e.kind for e in device.events][-1:] == ["watchdog"]
    await host.close()


async def test_a_link_the_device_drops_is_lost_and_can_be_made_again(guns: Guns) -> None:
    peripheral = guns.named["basic-5level"]
    device = peripheral.device
    link, spec = await open_ble_link(peripheral.name, clock=guns.clock, timeout=SHORT)
    host = BleHost(link, spec)
    await host.start()
    await host.send(run_command(spec))
    await host.wait_for(lambda s: s.running)

    device.faults.inject(DropLink(abrupt=True))
    assert await asyncio.wait_for(link.wait_disconnected(), 1.0) == "lost"
    assert not device.state.running  # the firmware stops on link loss
    assert peripheral.faults.connect_calls == 1

    await link.connect()  # the same link object reconnects
    assert link.connected
    assert device.connected
    await host.close()


@pytest.mark.parametrize("message", [CANCELED, CONNECTION_ABORTED, ABORT_BY_LOCAL])
async def test_refused_connections_are_retried(guns: Guns, message: str) -> None:
    peripheral = guns.named["gunctl-open"]
    peripheral.faults.refuse(2, message)
    link = BleakLink(
        await find(peripheral.address, SHORT), peripheral.spec, clock=guns.clock, max_attempts=3
    )
    await asyncio.wait_for(link.connect(), 10.0)
    assert link.connected
    assert (peripheral.faults.connect_calls, peripheral.faults.refused) == (3, 2)
    await link.disconnect()


async def test_a_device_that_refuses_is_retried_then_given_up_on(guns: Guns) -> None:
    peripheral = guns.named["theragun-gen4"]
    peripheral.device.faults.inject(RefuseConnections(count=2))
    ble_device = await find(peripheral.name, SHORT)
    link = BleakLink(ble_device, peripheral.spec, clock=guns.clock, max_attempts=3)
    await link.connect()
    assert link.connected
    assert peripheral.faults.connect_calls == 3
    await link.disconnect()

    peripheral.device.faults.inject(RefuseConnections(count=5))
    link = BleakLink(ble_device, peripheral.spec, clock=guns.clock, max_attempts=2)
    with pytest.raises(ConnectError):
        await link.connect()
    assert not link.connected


async def test_corrupted_notifications_fail_to_decode_and_the_link_carries_on(
    guns: Guns,
) -> None:
    peripheral = guns.named["gunctl-open"]
    link, spec = await open_ble_link(peripheral.address, clock=guns.clock, timeout=SHORT)
    host = BleHost(link, spec)
    await host.start()
    await host.wait_for(lambda s: True)
    peripheral.device.faults.inject(CorruptFrames(count=3))
    await eventually(lambda: len(host.decode_errors) >= 3)
    assert all(isinstance(e, DecodeError) for e in host.decode_errors)
    seen = len(host.reports)
    host.keep_alive()
    await host.send(SetSpeed(ppm=2000))
    await host.wait_for(lambda s: s.running)
    assert len(host.reports) > seen
    assert len(host.decode_errors) == 3
    await host.close()


async def test_a_frame_larger_than_the_mtu_is_refused(guns: Guns) -> None:
    spec = SPECS["gunctl-open"]
    peripheral = await guns.add(spec, name="gunctl-tiny", mtu=23)
    link = BleakLink(await find(peripheral.address, SHORT), spec, clock=guns.clock)
    await link.connect()
    assert link.mtu == 23
    with pytest.raises(LinkError, match="MTU"):
        await link.write(Endpoint.COMMAND, bytes(21), with_response=True)
    await link.write(Endpoint.COMMAND, bytes(20), with_response=False)  # fits; firmware ignores it
    assert peripheral.device.rejected
    await link.disconnect()


async def test_a_device_without_the_specs_characteristics_is_refused(guns: Guns) -> None:
    peripheral = guns.named["gunctl-open"]
    link = BleakLink(
        await find(peripheral.address, SHORT), SPECS["theragun-gen4"], clock=guns.clock
    )
    with pytest.raises(ConnectError, match="not a theragun-gen4 device"):
        await link.connect()
    assert not link.connected
    await asyncio.sleep(0.05)
    assert not peripheral.device.connected


async def test_operations_need_a_connection(guns: Guns) -> None:
    peripheral = guns.named["gunctl-open"]
    link = BleakLink(await find(peripheral.address, SHORT), peripheral.spec, clock=guns.clock)
    with pytest.raises(LinkLostError):
        await link.write(Endpoint.COMMAND, b"\xa5", with_response=True)
    assert [n async for n in link.notifications()] == []
    assert await link.wait_disconnected() == "requested"
    await link.disconnect()  # safe when never connected


async def test_a_connection_interval_holds_every_frame_for_the_next_event(guns: Guns) -> None:
    spec = SPECS["gunctl-open"]
    peripheral = await guns.add(spec, name="Slow Air", interval_s=0.05)
    link, _ = await open_ble_link(peripheral.address, clock=guns.clock, timeout=SHORT)
    host = BleHost(link, spec)
    await host.start()
    try:
        host.keep_alive()
        began = guns.clock.now()
        await host.send(SetSpeed(ppm=2000))  # with response: out at an event, back at the next
        assert guns.clock.now() - began >= 0.05
        await host.wait_for(lambda s: s.running)  # telemetry still comes, event by event
    finally:
        await host.close()


async def discovery(bus: MessageBus, member: str) -> str | None:
    """Call Adapter1.StartDiscovery or StopDiscovery as a client; the error's name, if any."""
    reply = await bus.call(
        Message(
            destination="org.bluez",
            path=ADAPTER_PATH,
            interface="org.bluez.Adapter1",
            member=member,
        )
    )
    assert reply is not None
    return reply.error_name


async def test_discovery_is_one_session_per_client_as_in_bluez(guns: Guns, system_bus: str) -> None:
    first, second = (MessageBus(bus_address=system_bus, bus_type=BusType.SYSTEM) for _ in "12")
    for bus in (first, second):
        await bus.connect()
    try:
        assert await discovery(first, "StartDiscovery") is None
        assert await discovery(first, "StartDiscovery") == "org.bluez.Error.InProgress"
        assert await discovery(second, "StartDiscovery") is None  # another client may
        assert await discovery(first, "StopDiscovery") is None
        assert guns.fake.adapter.discovering  # the other client's session goes on
        assert await discovery(first, "StopDiscovery") == "org.bluez.Error.Failed"
        assert await discovery(second, "StopDiscovery") is None
        assert not guns.fake.adapter.discovering  # the last session ended
    finally:
        first.disconnect()
        second.disconnect()


async def test_a_client_leaving_the_bus_ends_its_discovery_as_in_bluez(
    guns: Guns, system_bus: str
) -> None:
    first, second = (MessageBus(bus_address=system_bus, bus_type=BusType.SYSTEM) for _ in "12")
    for bus in (first, second):
        await bus.connect()
    try:
        assert await discovery(first, "StartDiscovery") is None
        assert await discovery(second, "StartDiscovery") is None
        first.disconnect()  # gone without StopDiscovery (a crash, a kill)
        # the other client's session goes on
        assert await discovery(second, "StartDiscovery") == "org.bluez.Error.InProgress"
        assert guns.fake.adapter.discovering
        assert await discovery(second, "StopDiscovery") is None
        await eventually(lambda: not guns.fake.adapter.discovering)  # no session is left
    finally:
        first.disconnect()
        second.disconnect()


async def test_guns_searched_for_at_once_share_one_discovery(guns: Guns) -> None:
    # every bleak scanner of a process is one BlueZ client: a second discovery of its own
    # would be refused (InProgress), so gunctl's searches share one
    wanted = [guns.named[family] for family in ("gunctl-open", "theragun-gen4", "basic-5level")]
    devices = await asyncio.gather(*(find(p.address, timeout=SHORT) for p in wanted))
    assert [d.address for d in devices] == [p.address for p in wanted]
    await eventually(lambda: not guns.fake.adapter.discovering)  # stopped with the last search
