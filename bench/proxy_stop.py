"""Stop through an ESPHome proxy: from the stop request to the stop frame at the simulated gun.

Three paths to three simulated ``gunctl-open`` guns, in one run, each with a
Supervisor holding a step with the motor running:

- SimLink: the in-process link, the floor;
- fake BlueZ: unmodified bleak on a private D-Bus (``BleakLink``);
- ESPHome proxy: bleak-esphome and habluetooth unmodified, over the ESPHome
  native API (plaintext) on loopback to a fake proxy (``ProxiedLink``).

The time is taken when ``Supervisor.request(stop)`` is called and when the
gun's firmware is handed the stop frame, so it covers the Supervisor, the link,
the transport and the fake. Stops are taken in turn across the paths, at a
random point in a tick. A real proxy adds Wi-Fi and its BLE connection
interval (7.5 ms at the shortest); none of that is modelled.

    python -m bench.proxy_stop [--samples 100]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator
from typing import Any

from bench.report import percentiles, report
from gunctl.clock import Clock
from gunctl.devices import Device, connect_ble, connect_sim
from gunctl.links.proxy import Proxies
from gunctl.links.proxy_config import ProxyConfig
from gunctl.logs import configure
from gunctl.profiles.loader import load_catalogue
from gunctl.profiles.plan import Plan, make_plan
from gunctl.requests import SessionAction, Start
from gunctl.specs.codec import Codec
from gunctl.specs.loader import get_spec
from gunctl.specs.messages import Stop
from gunsim import SimDevice
from gunsim.bluez import FakeBluez, private_bus_sync
from gunsim.esphome.proxy import FakeProxy

SPEC = "gunctl-open"


class StopAtGun:
    """Notes when the gun's firmware is handed a stop frame."""

    def __init__(self, gun: SimDevice) -> None:
        self.frame = Codec(gun.spec).encode_command(Stop())
        self.times: list[float] = []
        self.arrived = asyncio.Event()
        original = gun.receive

        def receive(data: bytes) -> None:
            if data == self.frame:
                self.times.append(time.perf_counter())
                self.arrived.set()
            original(data)

        gun.receive = receive  # type: ignore[method-assign]


def long_hold(device: Device) -> Plan:
    """The glute protocol's first step, held far longer than a measurement lasts."""
    catalogue = load_catalogue(None)
    plan = make_plan(catalogue.protocols["glute"], catalogue.muscles, device.spec, side="left")
    step = plan.steps[0].model_copy(update={"hold_s": 90.0, "ramp_s": 0.2, "rest_s": 0.0})
    return plan.model_copy(update={"steps": [step]})


async def running(device: Device, gun: SimDevice) -> None:
    """A session on the gun, motor running."""
    plan = long_hold(device)
    gun.fit_head(plan.steps[0].head)
    await device.supervisor.request(Start(plan))
    await device.supervisor.request(SessionAction("confirm_head"))
    while device.supervisor.driver.setpoint.stopped:  # noqa: ASYNC110 (no event to wait on)
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def three_paths(bus: str) -> AsyncIterator[dict[str, tuple[Device, SimDevice]]]:
    clock = Clock()
    spec = get_spec(SPEC)
    fake = FakeBluez(bus, seed=5)
    proxy = FakeProxy("bench-proxy", seed=5)
    bluez_gun = SimDevice(spec, clock=clock, seed=2)
    proxy_gun = SimDevice(spec, clock=clock, seed=3)
    async with contextlib.AsyncExitStack() as stack:
        for gun in (bluez_gun, proxy_gun):
            await stack.enter_async_context(gun)
        on_bluez = fake.add(bluez_gun)
        await stack.enter_async_context(fake)
        behind_proxy = proxy.add(proxy_gun)
        await stack.enter_async_context(proxy)
        proxies = await stack.enter_async_context(Proxies([ProxyConfig(address=proxy.address)]))
        sim = await connect_sim(SPEC, clock=clock, device_id="sim-1")
        stack.push_async_callback(sim.aclose)
        bluez = await connect_ble(on_bluez.address, clock=clock, timeout=5.0)
        stack.push_async_callback(bluez.aclose)
        proxied = await connect_ble(behind_proxy.address, clock=clock, timeout=5.0, proxies=proxies)
        stack.push_async_callback(proxied.aclose)
        assert sim.sim is not None
        yield {
            "SimLink": (sim, sim.sim),
            "fake BlueZ": (bluez, bluez_gun),
            "ESPHome proxy": (proxied, proxy_gun),
        }


async def measure(bus: str, samples: int) -> dict[str, list[float]]:
    results: dict[str, list[float]] = {}
    rng = random.Random(1)
    async with three_paths(bus) as paths:
        timers = {name: StopAtGun(gun) for name, (_, gun) in paths.items()}
        for _ in range(samples):
            for name, (device, gun) in paths.items():
                await running(device, gun)
                await asyncio.sleep(0.05 + rng.random() * 0.02)  # land anywhere in a tick
                timer = timers[name]
                timer.arrived.clear()
                before = len(timer.times)
                asked = time.perf_counter()
                await device.supervisor.request(SessionAction("stop"))
                await asyncio.wait_for(timer.arrived.wait(), 5)
                results.setdefault(name, []).append(timer.times[before] - asked)
                await asyncio.sleep(0.02)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.proxy_stop", description=__doc__)
    parser.add_argument("--samples", type=int, default=100, help="stops measured per path")
    args = parser.parse_args()
    configure(level="error")
    began = time.perf_counter()
    with private_bus_sync() as bus:
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus  # bleak finds "BlueZ" here
        results = asyncio.run(measure(bus, args.samples))
    rows: list[dict[str, Any]] = [
        {"stop request -> stop frame at the gun": name, **percentiles(samples)}
        for name, samples in results.items()
    ]
    report(
        "proxy_stop",
        "Stop latency in ms, three paths in one run",
        rows,
        meta={
            "spec": SPEC,
            "samples": args.samples,
            "proxy": "fake ESPHome proxy on loopback, plaintext",
            "wall_s": round(time.perf_counter() - began, 1),
        },
    )


if __name__ == "__main__":
    main()
