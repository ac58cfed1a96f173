"""Hot-plugging beside a running session: the running gun's loop must not notice.

One simulated gun runs a session (motor on, one long hold) while, in the same
process, 15 more guns connect and disconnect together, round after round:
first simulated guns (``connect_sim``), then guns behind a fake BlueZ through
unmodified bleak (``connect_ble``; the fake runs in a process of its own, as
BlueZ does). The running gun's tick lateness is measured in each phase, and
in a quiet phase of the same length first: that is the floor.

Target: the running gun's max lateness under one period (20 ms), no overrun.

    python -m bench.hotplug [--seconds 10] [--guns 15] [--hog] [--nice N]

``--hog`` adds a busy process pinned to core 0 and measures at the niceness
docs/gunctl.service gives the daemon (``--nice 0``: without it); see
bench/priority.py.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

from bench.priority import (
    add_arguments,
    cpu_hog,
    describe,
    own_session,
    service,
    take_priority,
)
from bench.report import percentiles, report
from bench.stalls import watch
from bench.supervisor import RATE_HZ, SPEC, confirm_heads, glute_plan
from gunctl.clock import Clock
from gunctl.devices import Device, connect_ble, connect_sim
from gunctl.logs import configure
from gunctl.requests import Start

PERIOD_MS = 1000 / RATE_HZ


@contextlib.contextmanager
def fake_bluez(guns: int) -> Iterator[list[str]]:
    """``guns`` simulated guns behind a fake BlueZ, a service of its own; yields their addresses."""
    process = service(
        [sys.executable, "-m", "gunsim.bluez", "--family", SPEC, "--count", str(guns)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    before = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
    try:
        line = process.stdout.readline()
        if not line.startswith("export DBUS_SYSTEM_BUS_ADDRESS="):
            raise RuntimeError(f"the fake BlueZ did not start: {process.stderr.read()}")
        os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = line.split("=", 1)[1].strip()
        addresses: list[str] = []
        while len(addresses) < guns:
            words = process.stderr.readline().split()
            if len(words) > 1 and words[0] == "#" and words[1].count(":") == 5:
                addresses.append(words[1])
        yield addresses
    finally:
        process.terminate()
        process.wait(10)
        if before is None:
            os.environ.pop("DBUS_SYSTEM_BUS_ADDRESS", None)
        else:
            os.environ["DBUS_SYSTEM_BUS_ADDRESS"] = before


async def churn(
    connect: Callable[[int], Awaitable[Device]], guns: int, seconds: float
) -> dict[str, int]:
    """Connect ``guns`` guns together, then close them together, until ``seconds`` pass."""
    rounds = connects = failures = 0
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        rounds += 1
        results = await asyncio.gather(*(connect(i) for i in range(guns)), return_exceptions=True)
        fleet = [r for r in results if isinstance(r, Device)]
        connects += len(fleet)
        failures += len(results) - len(fleet)
        await asyncio.sleep(0.2)
        await asyncio.gather(*(d.aclose() for d in fleet))
    return {"rounds": rounds, "connects": connects, "failures": failures}


async def measure(
    guns: int, seconds: float, addresses: list[str], *, freeze: bool = True
) -> list[dict[str, Any]]:
    clock = Clock()
    if addresses:
        # A daemon's first BLE connect imports bleak and its BlueZ backend and opens its
        # D-Bus connection (45 to 55 ms in one callback, once a process): done at start-up,
        # before this gun runs, as a daemon with BLE guns does it; the phase measures hot-plug.
        await (await connect_ble(addresses[0], clock=clock, timeout=10.0)).aclose()
    running = await connect_sim(SPEC, clock=clock, device_id="running", record_lateness=True)
    helper = asyncio.create_task(confirm_heads(running))
    await running.supervisor.request(Start(glute_plan(running)))
    await asyncio.sleep(3)  # the ramp is done, the motor at its hold speed
    if freeze:  # as gunctl serve does once it is up: start-up objects out of every collection
        gc.freeze()
    stats = running.supervisor.loop_stats

    async def quiet(_: int) -> Device:
        raise LookupError("no gun")

    async def sim(i: int) -> Device:
        return await connect_sim(SPEC, clock=clock, device_id=f"plug-{i}", seed=i)

    async def ble(i: int) -> Device:
        return await connect_ble(addresses[i], clock=clock, timeout=10.0)

    phases: list[tuple[str, Callable[[int], Awaitable[Device]], int]] = [
        ("quiet (floor)", quiet, 0),
        (f"{guns} simulated guns plugged in and out", sim, guns),
    ]
    if addresses:
        phases.append((f"{guns} fake-BlueZ guns plugged in and out", ble, guns))
    rows = []
    for label, connect, n in phases:
        stats.lateness.clear()
        overruns = stats.overruns
        with watch() as stalls:
            if n:
                counts = await churn(connect, n, seconds)
            else:
                await asyncio.sleep(seconds)
                counts = {"rounds": 0, "connects": 0, "failures": 0}
        late = percentiles(stats.lateness)
        rows.append(
            {
                "phase": label,
                "ticks": late["n"],
                "late p50 ms": late["p50"],
                "late p99 ms": late["p99"],
                "late max ms": late["max"],
                "overruns": stats.overruns - overruns,
                **counts,
                **stalls.columns(),
            }
        )
    helper.cancel()
    await running.aclose()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.hotplug", description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each phase")
    parser.add_argument("--guns", type=int, default=15, help="guns plugged in and out together")
    parser.add_argument("--no-ble", action="store_true", help="simulated guns only")
    parser.add_argument("--no-freeze", action="store_true", help="leave out serve's gc.freeze()")
    add_arguments(parser)
    args = parser.parse_args()
    own_session(args)
    configure(level="critical")
    with contextlib.ExitStack() as stack:
        hog_nice = stack.enter_context(cpu_hog(args.hog))
        addresses = [] if args.no_ble else stack.enter_context(fake_bluez(args.guns))
        nice = take_priority(args)  # the fake BlueZ, like BlueZ, keeps its own
        rows = asyncio.run(measure(args.guns, args.seconds, addresses, freeze=not args.no_freeze))
    beside, suffix, priority = describe(hog_nice, nice)
    report(
        f"hotplug{suffix}",
        f"The running gun's tick lateness while {args.guns} guns come and go{beside}",
        rows,
        {
            "spec": SPEC,
            "seconds": args.seconds,
            "gc_freeze": not args.no_freeze,
            "target_max_ms": PERIOD_MS,
            **priority,
        },
    )


if __name__ == "__main__":
    main()
