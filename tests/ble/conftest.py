"""The real bleak path: a private dbus-daemon per test session, a fake BlueZ per test.

bleak keeps one BlueZ manager per event loop and never re-reads the bus, so the
fake (and its guns) live exactly as long as one test's event loop. The daemon
is shared by the whole session; ``DBUS_SYSTEM_BUS_ADDRESS`` points bleak at it.
These tests run in real time: D-Bus is real I/O.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import pytest

from gunctl.clock import Clock
from gunctl.specs.loader import load_specs
from gunsim import SimDevice
from gunsim.bluez import BOOTSTRAP_HINT, BusUnavailableError, FakeBluez, private_bus_sync

from blehost import Guns
from proxyhost import House


@pytest.fixture(scope="session")
def system_bus() -> Iterator[str]:
    try:
        with private_bus_sync() as address:
            before = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = address
            try:
                yield address
            finally:
                if before is None:
                    os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
                else:
                    os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = before
    except BusUnavailableError as exc:
        # Never skip: a machine that cannot run these has not been set up.
        pytest.fail(f"{exc} ({BOOTSTRAP_HINT})", pytrace=False)


@pytest.fixture
async def guns(system_bus: str) -> AsyncIterator[Guns]:
    """One named gun per spec family, and one per family that only its service gives away."""
    clock = Clock()
    fake = FakeBluez(system_bus, seed=7)
    devices: list[SimDevice] = []
    guns = Guns(fake, clock)
    for seed, (family, spec) in enumerate(load_specs().items()):
        named = SimDevice(spec, clock=clock, seed=seed)
        anonymous = SimDevice(spec, clock=clock, seed=100 + seed)
        for device in (named, anonymous):
            await device.start()
            devices.append(device)
        guns.named[family] = fake.add(named)
        guns.anonymous[family] = fake.add(
            anonymous, name=f"Recovery Gun {seed}", advertise_manufacturer_data=False
        )
    await fake.start()
    try:
        yield guns
    finally:
        await fake.aclose()
        for device in devices + guns.extra:
            await device.aclose()


@pytest.fixture
async def house() -> AsyncIterator[House]:
    """Fake ESPHome proxies and guns, made by the test; all switched off after it."""
    made = House()
    try:
        yield made
    finally:
        await made.aclose()
