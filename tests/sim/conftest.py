"""Fixtures for the simulator tests: a clock, devices that switch off after, hosts."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from gunctl.clock import Clock
from gunctl.specs.models import DeviceSpec
from gunsim import SimDevice

from simhost import Host


@pytest.fixture
def sim_clock() -> Clock:
    return Clock()


@pytest.fixture
async def sim_device_factory(
    sim_clock: Clock,
) -> AsyncIterator[Callable[..., Any]]:
    devices: list[SimDevice] = []

    async def make(spec: DeviceSpec, **kwargs: Any) -> SimDevice:
        device = SimDevice(spec, clock=sim_clock, **kwargs)
        await device.start()
        devices.append(device)
        return device

    yield make
    for device in devices:
        await device.aclose()


@pytest.fixture
async def sim_host_factory() -> AsyncIterator[Callable[[SimDevice], Any]]:
    hosts: list[Host] = []

    async def make(device: SimDevice, *, connect: bool = True) -> Host:
        host = Host(device)
        if connect:
            await host.connect()
        hosts.append(host)
        return host

    yield make
    for host in hosts:
        await host.close()
