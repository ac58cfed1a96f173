"""Test support for the proxy tests: a house of fake ESPHome proxies and simulated guns."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from gunctl.clock import Clock
from gunctl.links.proxy import Proxies
from gunctl.links.proxy_config import ProxyConfig
from gunctl.specs.models import DeviceSpec
from gunsim import SimDevice
from gunsim.esphome.proxy import FakeProxy


@dataclass
class House:
    """Fake proxies on loopback and the simulated guns in their range; all closed after."""

    clock: Clock = field(default_factory=Clock)
    proxies: list[FakeProxy] = field(default_factory=list)
    guns: list[SimDevice] = field(default_factory=list)

    async def proxy(self, name: str, **options: Any) -> FakeProxy:
        proxy = FakeProxy(name, seed=len(self.proxies), **options)
        await proxy.start()
        self.proxies.append(proxy)
        return proxy

    async def gun(self, spec: DeviceSpec, **options: Any) -> SimDevice:
        device = SimDevice(spec, clock=self.clock, seed=len(self.guns) + 700, **options)
        await device.start()
        self.guns.append(device)
        return device

    async def aclose(self) -> None:
        for proxy in self.proxies:
            await proxy.aclose()
        for device in self.guns:
            await device.aclose()


def config(proxy: FakeProxy) -> ProxyConfig:
    return ProxyConfig.model_validate({"address": proxy.address, "key": proxy.psk})


@asynccontextmanager
async def reaching(*fakes: FakeProxy, listen_s: float = 0.4) -> AsyncIterator[Proxies]:
    """gunctl's side: the proxies started, and time for them to hear the guns."""
    async with Proxies([config(f) for f in fakes], start_timeout=5.0) as proxies:
        await asyncio.sleep(listen_s)
        yield proxies
