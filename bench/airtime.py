"""Air time in a stop: stop request to the motor slowing at the gun, by BLE connection interval.

One simulated ``gunctl-open`` gun holds a step with its motor running, over
the in-process link with a modelled connection interval (``SimLink``'s
``interval_s``: frames cross only at connection events). A stop is requested
at a random point of the interval; measured, in real time:

- request -> the gun's firmware has the stop frame: the motor's target is zero
  from that instant, and the simulated motor slows from there (a first-order
  lag and a slew limit, ``gunsim.params``);
- request -> the request returns: a stop written with response returns after
  the acknowledgement's way back; gunctl-open's stop is ``response_optional``,
  so it goes without one and returns as the frame leaves.

The floor, in the same run, is the link with no interval (frames cross at once).

    python -m bench.airtime [--samples 30] [--intervals 7.5,15,30,50]
"""

from __future__ import annotations

import argparse
import asyncio
import random
from typing import Any

from bench.report import percentiles, report
from bench.supervisor import SPEC, confirm_heads, glute_plan
from gunctl.clock import Clock
from gunctl.control.supervisor import Supervisor
from gunctl.devices import Device
from gunctl.links.sim import SimLink
from gunctl.logs import configure
from gunctl.requests import SessionAction, Start
from gunctl.specs.loader import get_spec
from gunctl.specs.messages import Stop
from gunsim import SimDevice


async def one_stop(interval_s: float | None, seed: int) -> tuple[float, float]:
    """(request -> stop at the firmware, request -> request returned), seconds."""
    spec = get_spec(SPEC)
    clock = Clock()
    sim = SimDevice(spec, clock=clock, seed=seed, address=f"air-{seed}")
    await sim.start()
    link = SimLink(sim, interval_s=interval_s)
    await link.connect()
    supervisor = Supervisor(spec, link, clock=clock, device_id=f"air-{seed}")
    device = Device(
        f"air-{seed}", spec, link, supervisor, asyncio.create_task(supervisor.run()), sim
    )
    helper = asyncio.create_task(confirm_heads(device))
    try:
        await supervisor.request(Start(glute_plan(device)))
        await asyncio.sleep(1.5 + random.Random(seed).uniform(0, 0.05))  # a random phase
        asked = clock.now()
        await supervisor.request(SessionAction("stop"))
        returned = clock.now()
        taken = next(c.at for c in sim.commands if c.at >= asked and c.command == Stop())
        return taken - asked, returned - asked
    finally:
        helper.cancel()
        await device.aclose()


async def measure(intervals: list[float | None], samples: int) -> list[dict[str, Any]]:
    rows = []
    for interval in intervals:
        taken, returned = [], []
        for i in range(samples):
            at_gun, back = await one_stop(interval, i)
            taken.append(at_gun)
            returned.append(back)
        label = "none (floor)" if interval is None else f"{interval * 1000:g} ms"
        for what, values in (("stop at the gun", taken), ("request returned", returned)):
            rows.append({"interval": label, "measure": what, **percentiles(values)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.airtime", description=__doc__)
    parser.add_argument("--samples", type=int, default=30)
    parser.add_argument("--intervals", default="7.5,15,30,50", help="milliseconds")
    args = parser.parse_args()
    configure(level="critical")
    intervals: list[float | None] = [None]
    intervals += [float(ms) / 1000 for ms in args.intervals.split(",")]
    rows = asyncio.run(measure(intervals, args.samples))
    report(
        "airtime",
        "Stop request to the motor slowing at the gun, by connection interval (ms)",
        rows,
        {"spec": SPEC, "samples": args.samples},
    )


if __name__ == "__main__":
    main()
