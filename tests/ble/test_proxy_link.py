"""Guns through fake ESPHome proxies, with bleak-esphome, habluetooth and bleak unmodified.

Each fake proxy listens on a loopback address of its own and speaks the ESPHome
native API with aioesphomeapi's message definitions; gunctl's side is the same
``Proxies`` and ``connect_ble`` a user runs. Real time, short plans.
"""

from __future__ import annotations

import asyncio
import base64
import os
import time

import pytest
from aioesphomeapi.core import ReadFailedAPIError
from bleak.exc import BleakError

from gunctl.devices import connect_ble
from gunctl.errors import OutOfSlotsError
from gunctl.links.base import Endpoint, LinkLostError
from gunctl.links.proxy import ANSWER_S, ProxiedLink, _proxy_gone
from gunctl.requests import Start
from gunctl.specs.codec import Codec
from gunctl.specs.loader import load_specs
from gunctl.specs.messages import SetLevel, SetSpeed
from gunsim import SlowAcks

from blehost import SHORT, Guns, Watch, eventually, is_stop, short_plan
from proxyhost import House, reaching

pytestmark = [pytest.mark.ble, pytest.mark.proxy]

SPECS = load_specs()
FAMILIES = [pytest.param(name, id=name) for name in SPECS]


async def test_two_proxies_are_merged_showing_who_hears_each_gun_and_how_well(
    house: House,
) -> None:
    hall = await house.proxy("hall", slots=3)
    bedroom = await house.proxy("bedroom", slots=5)
    shared = await house.gun(SPECS["theragun-gen4"])
    lonely = await house.gun(SPECS["basic-5level"])
    near = hall.add(shared, rssi=-80)
    bedroom.add(shared, address=near.address, rssi=-48)
    far = bedroom.add(lonely, rssi=-70)

    async with reaching(hall, bedroom) as proxies:
        heard = {h.device.address: h for h in proxies.heard()}
        states = {s.name.split(" ")[0]: s for s in proxies.states()}

    assert set(heard) == {near.address, far.address}
    both = heard[near.address]
    assert [h.source.split(" ")[0] for h in both.sources] == ["bedroom", "hall"]
    assert all(abs(h.rssi - want) <= 2 for h, want in zip(both.sources, (-48, -80), strict=True))
    assert both.advertisement.local_name == near.name
    assert [h.source.split(" ")[0] for h in heard[far.address].sources] == ["bedroom"]
    assert (states["hall"].slots, states["hall"].free) == (3, 3)
    assert (states["bedroom"].slots, states["bedroom"].free) == (5, 5)
    assert states["hall"].address == hall.address


@pytest.mark.parametrize("family", FAMILIES)
async def test_a_session_runs_to_completion_through_a_proxy(house: House, family: str) -> None:
    key = base64.b64encode(os.urandom(32)).decode() if family == "gunctl-open" else None
    proxy = await house.proxy("hall", psk=key)
    gun = await house.gun(SPECS[family])
    proxied = proxy.add(gun, rssi=-60)
    plan = short_plan(gun.spec)
    step = plan.steps[0]
    async with reaching(proxy) as proxies:
        device = await connect_ble(
            proxied.address, clock=house.clock, timeout=SHORT, proxies=proxies
        )
        assert isinstance(device.ble, ProxiedLink)
        assert (device.ble.source or "").startswith("hall")
        assert proxy.free == proxy.slots - 1
        watch = Watch(device, gun)
        try:
            await device.supervisor.request(Start(plan))
            end = await watch.end(plan.planned_s + SHORT)
            assert end.type == "session_completed", end
            assert watch.of("safety_stop") == []
        finally:
            await watch.close()
            await device.aclose()
        await eventually(lambda: proxy.free == proxy.slots)

    received = [record.command for record in gun.commands]
    if gun.spec.discrete:
        assert max(c.level for c in received if isinstance(c, SetLevel)) == step.level
    else:
        assert max(c.ppm for c in received if isinstance(c, SetSpeed)) == step.ppm
    motion = [c for c in received if isinstance(c, SetSpeed | SetLevel) or is_stop(c)]
    assert is_stop(motion[-1])
    assert not gun.state.running
    assert not gun.rejected
    assert proxy.notified > 0  # telemetry came back through the proxy
    if gun.spec.gatt.battery is not None:
        assert proxy.counters.reads >= 1


async def test_a_proxy_rebooting_mid_hold_ends_the_session_with_the_motor_stopped(
    house: House,
) -> None:
    proxy = await house.proxy("hall")
    gun = await house.gun(SPECS["gunctl-open"])
    proxied = proxy.add(gun)
    plan = short_plan(gun.spec, hold_s=30.0)
    async with reaching(proxy) as proxies:
        device = await connect_ble(
            proxied.address, clock=house.clock, timeout=SHORT, proxies=proxies
        )
        watch = Watch(device, gun)
        try:
            await device.supervisor.request(Start(plan))
            await watch.until("step_started")
            await eventually(lambda: gun.state.running and gun.state.speed_ppm > 1000)

            rebooted_at = house.clock.now()
            proxy.reboot(down_s=0.5)
            stop = await watch.until("safety_stop", 1.0)
            end = await watch.end(1.0)
            after = watch.arrived[watch.events.index(stop)] - rebooted_at
            print(f"\nproxy reboot: link_lost safety stop {after * 1000:.1f} ms after it")
            assert stop.rule == "link_lost"
            assert (end.type, end.reason) == ("session_aborted", "link_lost")
            await asyncio.wait_for(device.task, 1.0)
            assert device.supervisor.ended == "link lost"
            await eventually(lambda: not gun.state.running)
            assert gun.link_endings[-1][1] == "timeout"  # the radio went; nobody said goodbye
        finally:
            await watch.close()
            await device.aclose()

        # The proxy comes back and hears the gun again; nothing restarts by itself.
        await eventually(lambda: proxies.hearing(proxied.address) is not None, 10.0)
        assert not gun.connected
        assert not gun.state.running


async def test_out_of_slots_is_a_clear_error_naming_the_proxy(house: House) -> None:
    proxy = await house.proxy("hall", slots=1)
    first = proxy.add(await house.gun(SPECS["gunctl-open"]))
    second = proxy.add(await house.gun(SPECS["theragun-gen4"]))
    async with reaching(proxy) as proxies:
        holder, _ = await proxies.open_link(first.address, clock=house.clock, timeout=SHORT)
        await holder.connect()
        try:
            await eventually(lambda: proxy.free == 0)
            await eventually(lambda: proxies.hearing(second.address) is not None)
            late, _ = await proxies.open_link(second.address, clock=house.clock, timeout=SHORT)
            started = time.monotonic()
            with pytest.raises(OutOfSlotsError, match=r"hall .*no free slot") as caught:
                await late.connect()
            assert time.monotonic() - started < 1.0  # refused at once, not timed out
            assert second.address in str(caught.value)
        finally:
            await holder.disconnect()


async def test_a_gun_heard_by_two_proxies_connects_through_the_stronger_with_a_free_slot(
    house: House,
) -> None:
    strong = await house.proxy("hall", slots=1)
    weak = await house.proxy("bedroom", slots=3)
    gun = await house.gun(SPECS["gunctl-open"])
    other = await house.gun(SPECS["theragun-gen4"])
    target = strong.add(gun, rssi=-45)
    weak.add(gun, address=target.address, rssi=-85)
    blocker = strong.add(other, rssi=-50)
    async with reaching(strong, weak) as proxies:
        link, _ = await proxies.open_link(target.address, clock=house.clock, timeout=SHORT)
        await link.connect()
        try:
            assert (link.source or "").startswith("hall")
            assert target.address in strong.links
        finally:
            await link.disconnect()
        await eventually(lambda: strong.free == 1 and gun.connected is False)

        # The strong proxy's only slot taken: the weaker one carries the gun.
        held, _ = await proxies.open_link(blocker.address, clock=house.clock, timeout=SHORT)
        await held.connect()
        await eventually(lambda: strong.free == 0)
        await eventually(lambda: proxies.hearing(target.address) is not None)
        link, _ = await proxies.open_link(target.address, clock=house.clock, timeout=SHORT)
        await link.connect()
        try:
            assert (link.source or "").startswith("bedroom")
            assert target.address in weak.links
        finally:
            await link.disconnect()
            await held.disconnect()


async def test_a_write_caught_by_a_reboot_is_a_lost_link_not_a_failed_write(
    house: House,
) -> None:
    proxy = await house.proxy("hall")
    gun = await house.gun(SPECS["theragun-gen4"])  # set speed is written with response
    heard = proxy.add(gun)
    async with reaching(proxy) as proxies:
        link, spec = await proxies.open_link(heard.address, clock=house.clock, timeout=SHORT)
        await link.connect()
        gun.faults.inject(SlowAcks(delay_s=1.0))  # the reply is still to come at the reboot
        frame = Codec(spec).encode_command(SetSpeed(ppm=1800))
        writing = asyncio.create_task(link.write(Endpoint.COMMAND, frame, with_response=True))
        await eventually(lambda: proxy.counters.writes_with_response == 1)
        proxy.reboot(down_s=0.5)
        with pytest.raises(LinkLostError):
            await asyncio.wait_for(writing, SHORT)
        assert not link.connected
        assert link.reason == "lost"


def test_the_proxy_connection_reset_is_recognised_however_deeply_it_is_wrapped() -> None:
    # What a write with response meets when the reset wins the race with bleak-esphome's
    # disconnect callback: bleak's error, from aioesphomeapi's, from the socket's.
    def raised(exc: BaseException, cause: BaseException) -> BaseException:
        exc.__cause__ = cause
        return exc

    reset = ConnectionResetError(104, "Connection reset by peer")
    read_failed = raised(ReadFailedAPIError(str(reset)), reset)
    assert _proxy_gone(raised(BleakError(str(reset)), read_failed))
    assert _proxy_gone(reset)
    assert not _proxy_gone(BleakError("Characteristic 0xffe2 was not found"))
    assert not _proxy_gone(TimeoutError())


async def test_a_proxy_gone_silent_mid_hold_is_a_safety_stop_and_the_gun_stops_itself(
    house: House,
) -> None:
    proxy = await house.proxy("hall")
    gun = await house.gun(SPECS["gunctl-open"])  # keepalive every 0.2 s, watchdog at 0.6 s
    heard = proxy.add(gun)
    plan = short_plan(gun.spec, hold_s=30.0)
    async with reaching(proxy) as proxies:
        device = await connect_ble(heard.address, clock=house.clock, timeout=SHORT, proxies=proxies)
        watch = Watch(device, gun)
        try:
            await device.supervisor.request(Start(plan))
            await watch.until("step_started")
            await eventually(lambda: gun.state.running and gun.state.speed_ppm > 1000)

            silenced_at = house.clock.now()
            proxy.silence()  # a wedged board: nothing relayed either way, links held
            stop = await watch.until("safety_stop", ANSWER_S + 1.0)
            after = watch.arrived[watch.events.index(stop)] - silenced_at
            print(f"\nsilent proxy: {stop.rule} safety stop {after * 1000:.0f} ms after it")
            assert stop.rule in {"stale_telemetry", "link_lost", "write_unanswered"}
            end = await watch.end(1.0)
            assert end.type == "session_aborted"
            # No stop frame can get through: the gun's own watchdog stops the motor.
            await eventually(lambda: not gun.state.running, 2.0)
            assert [e.kind for e in gun.events][-1] == "watchdog"
            assert gun.connected  # the proxy still holds the Bluetooth link
        finally:
            await watch.close()
            proxy.silence(False)
            await device.aclose()


@pytest.mark.parametrize(
    ("local_rssi", "proxy_rssi", "through"),
    [
        pytest.param(-40, -75, "local", id="the-local-adapter-hears-it-better"),
        pytest.param(-85, -50, "proxy", id="the-proxy-hears-it-better"),
    ],
)
async def test_a_gun_connects_through_the_local_adapter_or_a_proxy_whichever_hears_it_best(
    guns: Guns, house: House, local_rssi: int, proxy_rssi: int, through: str
) -> None:
    gun = await house.gun(SPECS["gunctl-open"])
    here = guns.fake.add(gun, rssi=local_rssi)
    proxy = await house.proxy("hall")
    proxy.add(gun, address=here.address, rssi=proxy_rssi)
    async with reaching(proxy) as proxies:
        device = await connect_ble(here.address, clock=house.clock, timeout=SHORT, proxies=proxies)
        try:
            assert device.connected
            via_proxy = isinstance(device.ble, ProxiedLink)
            assert via_proxy == (through == "proxy")
            assert (here.address in proxy.links) == (through == "proxy")
            assert here.connected == (through == "local")
            await eventually(lambda: device.supervisor.link_stats.frames > 3)
        finally:
            await device.aclose()
