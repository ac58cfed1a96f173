"""The BLE path's own cost: scan to connected, and a command to the telemetry that reflects it.

Through unmodified bleak and the fake BlueZ on a private D-Bus (``BleakLink``),
beside the in-process ``SimLink`` to the same simulated firmware, in one run:

- scan to connected: ``find`` (a scan that stops at the first advertisement of
  the address) then ``BleakLink.connect`` (stale-connection check, Connect,
  service resolution, subscription), repeated; SimLink has no scan;
- status request to status (theragun-gen4, polled telemetry, both written with
  response): what the Supervisor pays for every poll;
- set speed to the first status frame that reflects it (gunctl-open, a 25 Hz
  stream): start and stop in turn, each timed until a frame says the motor is
  running, or stopped. The stream period (40 ms) dominates; the difference
  between the two links is what the radio path costs.

A real radio adds its connection interval (7.5 ms at the shortest) to every
exchange; none of that is modelled here. The scan takes one advertising
interval of the fake (0.25 s): its first advertisement after StartDiscovery
goes by before bleak's ``find`` listens, as a real gun's can, and a real gun
advertises at an interval of its own.

    python -m bench.ble_latency [--connects 20] [--round-trips 500] [--stream-round-trips 250]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from bench.report import percentiles, report
from gunctl.clock import Clock
from gunctl.links.base import Endpoint, Link, Notification
from gunctl.links.ble import BleakLink
from gunctl.links.scan import find
from gunctl.links.sim import SimLink
from gunctl.specs.codec import Codec, DecodeError
from gunctl.specs.loader import get_spec
from gunctl.specs.messages import Command, SetSpeed, Status, StatusRequest, Stop
from gunctl.specs.models import DeviceSpec
from gunsim import SimDevice
from gunsim.bluez import FakeBluez, private_bus_sync

POLLED = "theragun-gen4"
STREAMED = "gunctl-open"
ADVERTISE_PERIOD_S = 0.25  # the fake's own default, set here so the results say it


class Prober:
    """Write a command and time it until a status frame passes a test."""

    def __init__(self, link: Link, spec: DeviceSpec) -> None:
        self.link = link
        self.codec = Codec(spec)
        self._want: tuple[Callable[[Status], bool], asyncio.Future[float]] | None = None
        self._listener: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Prober:
        await self.link.connect()
        # subscribed before the first write: SimLink hands a reply over inside the write
        self._listener = asyncio.create_task(self._listen(self.link.notifications()))
        return self

    async def __aexit__(self, *exc: object) -> None:
        with contextlib.suppress(Exception):
            await self.write(Stop())
        await self.link.disconnect()
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener

    async def write(self, command: Command) -> None:
        await self.link.write(
            Endpoint.COMMAND,
            self.codec.encode_command(command),
            with_response=self.codec.with_response(command),
        )

    async def round_trip(self, command: Command, test: Callable[[Status], bool]) -> float:
        arrived: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._want = (test, arrived)
        start = time.perf_counter()
        await self.write(command)
        end = await asyncio.wait_for(arrived, 2.0)
        self._want = None
        return end - start

    async def _listen(self, notes: AsyncIterator[Notification]) -> None:
        async for note in notes:
            if note.endpoint is not Endpoint.TELEMETRY or self._want is None:
                continue
            try:
                report = self.codec.decode_report(note.data)
            except DecodeError:
                continue
            test, arrived = self._want
            if isinstance(report, Status) and test(report) and not arrived.done():
                arrived.set_result(time.perf_counter())


async def polls(prober: Prober, n: int) -> list[float]:
    await prober.round_trip(StatusRequest(), lambda s: True)  # warm up
    return [await prober.round_trip(StatusRequest(), lambda s: True) for _ in range(n)]


def running(status: Status) -> bool:
    return status.running is True


def stopped(status: Status) -> bool:
    return status.running is False


async def speed_changes(prober: Prober, n: int, period_s: float) -> list[float]:
    # Each command goes out at a random point of the stream's period: sent right
    # after the frame that answered the last one, it would always wait a whole period.
    rng = random.Random(0)
    samples = []
    for i in range(n + 1):
        await asyncio.sleep(rng.uniform(0.0, period_s))
        command: Command = SetSpeed(ppm=2000) if i % 2 == 0 else Stop()
        took = await prober.round_trip(command, running if i % 2 == 0 else stopped)
        if i:  # the first one warms up
            samples.append(took)
    return samples


async def scan_to_connected(
    address: str, spec: DeviceSpec, clock: Clock, n: int
) -> tuple[list[float], list[float], list[float]]:
    scans, connects, totals = [], [], []
    for _ in range(n):
        start = time.perf_counter()
        ble_device = await find(address, 5.0)
        found = time.perf_counter()
        link = BleakLink(ble_device, spec, clock=clock)
        await link.connect()
        done = time.perf_counter()
        await link.disconnect()
        scans.append(found - start)
        connects.append(done - found)
        totals.append(done - start)
        await asyncio.sleep(0.05)  # let BlueZ (the fake) settle the disconnection
    return scans, connects, totals


async def sim_connects(spec: DeviceSpec, clock: Clock, n: int) -> list[float]:
    async with SimDevice(spec, clock=clock, seed=1) as device:
        samples = []
        for _ in range(n):
            link = SimLink(device)
            start = time.perf_counter()
            await link.connect()
            samples.append(time.perf_counter() - start)
            await link.disconnect()
        return samples


def row(path: str, measure: str, samples: list[float]) -> dict[str, Any]:
    stats = percentiles(samples)
    return {
        "measure": measure,
        "path": path,
        "n": stats["n"],
        "p50 ms": stats["p50"],
        "p99 ms": stats["p99"],
        "max ms": stats["max"],
    }


async def measure(bus: str, connects: int, round_trips: int, stream_trips: int) -> list[Any]:
    clock = Clock()
    polled, streamed = get_spec(POLLED), get_spec(STREAMED)
    rows = []
    fake = FakeBluez(bus, seed=3)
    fake.advertise_period_s = ADVERTISE_PERIOD_S
    guns = {
        name: SimDevice(spec, clock=clock, seed=i)
        for i, (name, spec) in enumerate([(POLLED, polled), (STREAMED, streamed)])
    }
    for gun in guns.values():
        await gun.start()
    peripherals = {name: fake.add(gun) for name, gun in guns.items()}
    await fake.start()
    try:
        scans, links, totals = await scan_to_connected(
            peripherals[STREAMED].address, streamed, clock, connects
        )
        rows += [
            row("fake BlueZ", "scan to connected", totals),
            row("fake BlueZ", "  of which scan", scans),
            row("fake BlueZ", "  of which connect", links),
            row("SimLink", "connect", await sim_connects(streamed, clock, connects)),
        ]
        address = peripherals[POLLED].address
        async with Prober(BleakLink(await find(address, 5.0), polled, clock=clock), polled) as p:
            bleak_polls = await polls(p, round_trips)
        async with Prober(SimLink(guns[POLLED]), polled) as p:
            sim_polls = await polls(p, round_trips)
        rows += [
            row("fake BlueZ", f"status request -> status ({POLLED})", bleak_polls),
            row("SimLink", f"status request -> status ({POLLED})", sim_polls),
        ]
        address = peripherals[STREAMED].address
        period = streamed.capabilities.telemetry.period_s
        link = BleakLink(await find(address, 5.0), streamed, clock=clock)
        async with Prober(link, streamed) as p:
            bleak_changes = await speed_changes(p, stream_trips, period)
        async with Prober(SimLink(guns[STREAMED]), streamed) as p:
            sim_changes = await speed_changes(p, stream_trips, period)
        rows += [
            row("fake BlueZ", f"set speed -> status reflects it ({STREAMED})", bleak_changes),
            row("SimLink", f"set speed -> status reflects it ({STREAMED})", sim_changes),
        ]
    finally:
        await fake.aclose()
        for gun in guns.values():
            await gun.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.ble_latency", description=__doc__)
    parser.add_argument("--connects", type=int, default=20, help="scan-to-connected repeats")
    parser.add_argument("--round-trips", type=int, default=500, help="status request round trips")
    parser.add_argument(
        "--stream-round-trips", type=int, default=250, help="set speed round trips (25 Hz stream)"
    )
    args = parser.parse_args()
    began = time.perf_counter()
    with private_bus_sync() as bus:
        before = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = bus  # bleak finds "BlueZ" here
        try:
            rows = asyncio.run(
                measure(bus, args.connects, args.round_trips, args.stream_round_trips)
            )
        finally:
            if before is None:
                os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
            else:
                os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = before
    report(
        "ble_latency",
        "BLE path: fake BlueZ through bleak vs in-process SimLink",
        rows,
        meta={
            "connects": args.connects,
            "round_trips": args.round_trips,
            "stream_round_trips": args.stream_round_trips,
            "fake_advertise_period_s": ADVERTISE_PERIOD_S,
            "wall_s": round(time.perf_counter() - began, 1),
        },
    )


if __name__ == "__main__":
    main()
