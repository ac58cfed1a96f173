"""The control loop in real time: tick lateness and CPU with 1, 16 and 64 devices, and stop latency.

Every figure has a floor measured in the same run: a bare asyncio loop with the
same number of tasks ticking at the same rate against absolute deadlines. The
machines this runs on are shared and noisy; the comparison is what matters.

    python -m bench.supervisor [--seconds 20] [--devices 1,16,64] [--split] [--hog] [--nice N]

``--split`` first measures, in a run of its own, the CPU of each device-tick
by who spent it: the Supervisor's tasks, the simulated gun's, and the rest.
``--hog`` runs everything, floor included, beside a busy process pinned to
one core, at the niceness docs/gunctl.service gives the daemon (``--nice 0``:
without that priority; see bench/priority.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import time
from collections.abc import Callable
from typing import Any

from bench.priority import add_arguments, cpu_hog, describe, own_session, take_priority
from bench.report import percentiles, report
from bench.stalls import watch
from gunctl.clock import Clock
from gunctl.control.supervisor import Supervisor
from gunctl.devices import Device, connect_sim
from gunctl.heads import Head
from gunctl.links.base import Endpoint, Link, Notification, Receiver
from gunctl.links.sim import SimLink
from gunctl.logs import configure
from gunctl.profiles.loader import load_catalogue
from gunctl.profiles.plan import Plan, make_plan
from gunctl.requests import SessionAction, Start
from gunctl.specs.codec import Codec, DecodeError
from gunctl.specs.loader import get_spec
from gunctl.specs.messages import Status, Stop
from gunsim import Overheat, SimDevice

RATE_HZ = 50.0
SPEC = "gunctl-open"


def glute_plan(device: Device) -> Plan:
    catalogue = load_catalogue()
    plan = make_plan(catalogue.protocols["glute"], catalogue.muscles, device.spec)
    # one long hold, so every device keeps its motor running for the whole measurement
    step = plan.steps[0].model_copy(update={"hold_s": 3600.0, "hold_max_s": 3600.0})
    return plan.model_copy(update={"steps": [step]})


async def confirm_heads(device: Device) -> None:
    async for event in device.supervisor.bus.subscribe():
        if event.type == "head_change_required":
            assert device.sim is not None
            device.sim.fit_head(Head(event.step.head))
            await device.supervisor.request(SessionAction("confirm_head"))


async def bare_loop(tasks: int, seconds: float) -> dict[str, Any]:
    """The floor: ``tasks`` coroutines ticking at RATE_HZ against absolute deadlines."""
    loop = asyncio.get_running_loop()
    period = 1 / RATE_HZ
    late: list[float] = []
    overruns = 0

    async def ticker() -> None:
        nonlocal overruns
        start = loop.time()
        n = 0
        while loop.time() - start < seconds:
            n += 1
            deadline = start + n * period
            await asyncio.sleep(deadline - loop.time())
            lateness = loop.time() - deadline
            late.append(lateness)
            if lateness > period:
                overruns += 1
                n = int((loop.time() - start) / period)

    cpu = time.process_time()
    with watch() as stalls:
        await asyncio.gather(*(ticker() for _ in range(tasks)))
    cpu = time.process_time() - cpu
    return {
        "late": late,
        "overruns": overruns,
        "cpu_us_per_tick": cpu / max(1, len(late)) * 1e6,
        "stalls": stalls.columns(),
    }


class CpuSplit:
    """CPU time of every event-loop callback, by whose task ran it: Supervisor, simulator, other.

    asyncio runs every callback through ``Handle._run``; timing it with the
    thread's CPU clock (not the wall clock, so a busy machine does not count)
    and naming the task it stepped tells the Supervisor's own cost apart from
    the simulated gun's it drives. Work one side does inside the other's
    callback is moved to its own side: the simulated firmware takes each frame
    inside the Supervisor's write (``SimDevice.receive``, in-process), and the
    Supervisor decodes and checks each frame inside the simulated gun's
    notification (``Supervisor._take_frame``). The asyncio machinery between
    callbacks is in neither.
    """

    def __init__(self) -> None:
        self.cpu = {"Supervisor": 0.0, "simulator": 0.0, "other": 0.0}
        self._moved = 0.0  # CPU of the calls charged elsewhere, inside the callback running now
        # what an older checkout lacks is left out, so a copy of this file measures it
        # the same way (before frames by a call and the metronome, both ran in tasks)
        self._patched = [
            (owner, name, part)
            for owner, name, part in [
                (asyncio.events.Handle, "_run", None),
                (SimDevice, "receive", "simulator"),
                (Supervisor, "_take_frame", "Supervisor"),
                (Supervisor, "beat", "Supervisor"),
            ]
            if hasattr(owner, name)
        ]
        self._originals = [getattr(owner, name) for owner, name, _ in self._patched]

    def _timed(self, call: Any, part: str | None) -> Any:
        """``call``, its CPU charged to ``part`` (None: to the task it steps) less what it moved."""
        cpu = self.cpu

        def timed(owner: Any, *args: Any) -> Any:
            outer, self._moved = self._moved, 0.0
            began = time.thread_time()
            try:
                return call(owner, *args)
            finally:
                spent = time.thread_time() - began
                cpu[part or self._part(owner)] += spent - self._moved
                self._moved = outer + spent

        return timed

    @staticmethod
    def _part(handle: asyncio.Handle) -> str:
        owner = getattr(getattr(handle, "_callback", None), "__self__", None)
        coro = owner.get_coro() if isinstance(owner, asyncio.Task) else None
        name = getattr(coro, "__qualname__", "")
        if name.startswith("Supervisor."):
            return "Supervisor"
        return "simulator" if name.startswith("SimDevice.") else "other"

    def __enter__(self) -> CpuSplit:
        for (owner, name, part), call in zip(self._patched, self._originals, strict=True):
            setattr(owner, name, self._timed(call, part))
        return self

    def __exit__(self, *exc: object) -> None:
        for (owner, name, _), call in zip(self._patched, self._originals, strict=True):
            setattr(owner, name, call)


async def supervised(devices: int, seconds: float, *, split: bool = False) -> dict[str, Any]:
    clock = Clock()
    fleet = [
        await connect_sim(SPEC, clock=clock, device_id=f"bench-{i}", seed=i, record_lateness=True)
        for i in range(devices)
    ]
    helpers = [asyncio.create_task(confirm_heads(d)) for d in fleet]
    for device in fleet:
        await device.supervisor.request(Start(glute_plan(device)))
    await asyncio.sleep(3)  # ramps done, every motor at its hold speed
    gc.freeze()  # as gunctl serve does once it is up: start-up objects out of every collection
    for device in fleet:
        stats = device.supervisor.loop_stats
        stats.lateness.clear()
        stats.overruns = 0
    cpu = time.process_time()
    with watch() as stalls, CpuSplit() if split else contextlib.nullcontext() as parts:
        await asyncio.sleep(seconds)
    cpu = time.process_time() - cpu
    late = [x for d in fleet for x in d.supervisor.loop_stats.lateness]
    overruns = sum(d.supervisor.loop_stats.overruns for d in fleet)
    for task in helpers:
        task.cancel()
    for device in fleet:
        await device.aclose()
    gc.unfreeze()
    result = {
        "late": late,
        "overruns": overruns,
        "cpu_us_per_tick": cpu / max(1, len(late)) * 1e6,
        "stalls": stalls.columns(),
    }
    if parts is not None:
        result["split"] = {k: v / max(1, len(late)) * 1e6 for k, v in parts.cpu.items()}
    return result


async def cpu_split(devices: int, seconds: float) -> list[dict[str, Any]]:
    """The Supervisor's own CPU per device-tick, apart from the simulator's, in a run of its own."""
    result = await supervised(devices, seconds, split=True)
    split = result["split"]
    return [
        {"devices": devices, "part": part, "cpu us/tick": round(us, 1)}
        for part, us in [*split.items(), ("process (all)", result["cpu_us_per_tick"])]
    ]


class StopTimer:
    """Wraps a link: notes the real time of each stop frame written and each hazard seen."""

    def __init__(self, link: Link, codec: Codec, hot_c: float) -> None:
        self.link = link
        self.codec = codec
        self.hot_c = hot_c
        self.stop_frame = codec.encode_command(Stop())
        self.stops: list[float] = []
        self.hazards: list[float] = []
        self.stopped = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.link, name)

    async def write(self, endpoint: Endpoint, data: bytes, *, with_response: bool) -> None:
        if data == self.stop_frame:
            self.stops.append(time.perf_counter())
            self.stopped.set()
        await self.link.write(endpoint, data, with_response=with_response)

    def listen(self, receive: Receiver) -> Callable[[], None]:
        def timed(note: Notification | None) -> None:
            if note is not None:
                try:
                    report_ = self.codec.decode_report(note.data)
                except DecodeError:
                    report_ = None
                if isinstance(report_, Status) and (report_.temperature_c or 0) >= self.hot_c:
                    self.hazards.append(time.perf_counter())
            receive(note)

        return self.link.listen(timed)


async def stop_latency(repeats: int) -> dict[str, list[float]]:
    """Request-to-stop-frame and hazard-in-telemetry-to-stop-frame, one device at a time."""
    spec = get_spec(SPEC)
    codec = Codec(spec)
    requested: list[float] = []
    hazard: list[float] = []
    for i in range(repeats):
        clock = Clock()
        sim = SimDevice(spec, clock=clock, seed=i, address=f"stop-{i}")
        await sim.start()
        link = SimLink(sim)
        await link.connect()
        timer = StopTimer(link, codec, hot_c=65.0)
        supervisor = Supervisor(spec, timer, clock=clock, device_id=f"stop-{i}")
        device = Device(
            f"stop-{i}", spec, timer, supervisor, asyncio.create_task(supervisor.run()), sim
        )
        helper = asyncio.create_task(confirm_heads(device))
        await supervisor.request(Start(glute_plan(device)))
        # running, and landing at a different point of the tick each time
        await asyncio.sleep(1.5 + (i % 7) * 0.003)
        before = len(timer.stops)
        if i % 2 == 0:
            asked = time.perf_counter()
            await supervisor.request(SessionAction("stop"))
            requested.append(timer.stops[before] - asked)
        else:
            timer.stopped.clear()  # a stop before it (a loaded machine's stale telemetry) is not it
            sim.faults.inject(Overheat(temperature_c=70))
            await timer.stopped.wait()
            hazard.append(timer.stops[before] - timer.hazards[0])
        helper.cancel()
        await device.aclose()
    return {"request": requested, "hazard": hazard}


async def main(
    seconds: float,
    counts: list[int],
    repeats: int,
    split: bool,
    hog_nice: int | None,
    nice: int,
) -> None:
    configure(level="critical")
    beside, suffix, priority = describe(hog_nice, nice)
    if split:
        report(
            f"supervisor_cpu{suffix}",
            f"CPU per device-tick by part, {max(counts)} guns for {seconds:g} s{beside}",
            await cpu_split(max(counts), seconds),
            {"spec": SPEC},
        )
    rows: list[dict[str, Any]] = []
    for n in counts:
        for label, run in (("bare asyncio", bare_loop), ("supervisor+sim", supervised)):
            result = await run(n, seconds)
            late = percentiles(result["late"])
            rows.append(
                {
                    "devices": n,
                    "loop": label,
                    "ticks": late["n"],
                    "late p50 ms": late["p50"],
                    "late p99 ms": late["p99"],
                    "late max ms": late["max"],
                    "overruns": result["overruns"],
                    "cpu us/tick": round(result["cpu_us_per_tick"], 1),
                    **result["stalls"],
                }
            )
    report(
        f"supervisor_loop{suffix}",
        f"Control loop at {RATE_HZ:g} Hz for {seconds:g} s{beside}",
        rows,
        {"spec": SPEC, **priority},
    )
    stops = await stop_latency(repeats)
    request, hazard = percentiles(stops["request"]), percentiles(stops["hazard"])
    report(
        f"supervisor_stop{suffix}",
        f"Stop latency (ms){beside}",
        [
            {"path": "request -> stop frame written", **request},
            {"path": "hazard in telemetry -> stop frame written", **hazard},
        ],
        {
            "tick_period_ms": 1000 / RATE_HZ,
            "targets": {"request_p99_ms": 2.0, "hazard_p99_ms": 1.0},
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--devices", default="1,16,64")
    parser.add_argument(
        "--repeats", type=int, default=40, help="stop-latency runs (half each kind)"
    )
    parser.add_argument(
        "--split",
        action="store_true",
        help="first, the Supervisor's CPU apart from the simulator's (its own run)",
    )
    add_arguments(parser)
    args = parser.parse_args()
    own_session(args)
    with cpu_hog(args.hog) as hog_nice:
        nice = take_priority(args)
        asyncio.run(
            main(
                args.seconds,
                [int(n) for n in args.devices.split(",")],
                args.repeats,
                args.split,
                hog_nice,
                nice,
            )
        )
