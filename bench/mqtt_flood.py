"""A flood of junk, then a stop: is the stop lost, how late is it, and how late are the loops?

A private Mosquitto at its default limits on loopback; ``gunctl serve``'s daemon
and bridge in this process with simulated guns in real time, every one of them
running a session. Each trial, four ``mosquitto_pub -l`` processes publish
10,000 junk messages (QoS 1) as fast as the broker takes them: commands for
devices nobody serves, payloads that are not JSON, JSON nested thousands deep,
and valid starts refused because a session runs. Then one stop for gun 1, on
its stop topic (the stop line) or on its ``set`` topic (alternating trials).
Measured: stops lost (no stop frame within 10 s), stop published -> stop frame
written, the worst control-loop lateness of the other running guns during the
flood and, as the machine's own noise, during a quiet spell of the same length
just before it (same daemon, same guns, no flood), and how many junk messages
the daemon refused per second from the first to the last (and how many the
broker dropped from its full queue for the daemon, as it is allowed to; and,
as ``screened per s``, those the commands process refused itself, from its
first to its last: all but the valid starts, which the gun's lane refuses), how
many the commands process shed unread and the most that waited in it for the
daemon (:mod:`gunctl.mqtt.screen`). The junk is counted by the commands
process, which tells the daemon every 20 ms while counts move.
The floor, in the same run: the commands process's kind of connection (gmqtt,
in a process of its own, :func:`floor_process`, at the same QoS) taking the same flood and
doing nothing with it but count (told every 20 ms too), beside a bare 50 Hz
asyncio ticker in the bench's process.

``--nice -10`` runs the daemon (this process, every thread of it, and its
session) at the niceness docs/gunctl.service gives ``gunctl serve``, while the
broker and the publishers run as other services, each in a session of its own
at 0; ``--hog`` adds a busy neighbour (:mod:`bench.priority`).

    python -m bench.mqtt_flood [--trials 20] [--junk 10000] [--devices 4] [--hog] [--nice N]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from statistics import median
from typing import Any

import aiomqtt
import gmqtt

from bench.mqtt_stop import SPEC, StopTimes, mosquitto, protocol_of, serving
from bench.priority import (
    add_arguments,
    as_service,
    cpu_hog,
    describe,
    own_session,
    take_priority,
)
from bench.report import percentiles, report
from gunctl.control.supervisor import LoopStats
from gunctl.daemon import DeviceSlot
from gunctl.logs import configure
from gunctl.mqtt.screen import SET_QOS
from gunctl.mqtt.service import Service
from gunctl.requests import CommandError, SessionCommand, StartCommand

STOP_TOPIC_P99_MS = 50.0
SET_TOPIC_MAX_S = 1.0
PERIOD_MS = 20.0  # one control-loop period at 50 Hz
DRAIN_PER_S = 10_000
RUNNING_S = 10.0  # for every gun's motor to run again before a trial


async def run_all(service: Service, slots: list[DeviceSlot]) -> None:
    """A session on every gun, motor running (head confirmed).

    On a loaded machine a session can end by a safety stop (stale telemetry)
    before a trial or as it starts: it is started again, for up to
    :data:`RUNNING_S`, and then the bench ends saying so rather than waiting for
    ever.
    """
    async with asyncio.timeout(RUNNING_S):
        while True:
            idle = [
                s
                for s in slots
                if s.device.supervisor.driver.setpoint.stopped  # type: ignore[union-attr]
            ]
            if not idle:
                return
            for slot in idle:
                if slot.device.supervisor.running:  # type: ignore[union-attr]
                    continue  # started: its motor is about to run
                start = StartCommand(action="start", protocol=protocol_of(slot), side="left")
                with contextlib.suppress(CommandError):  # offline for a moment: again soon
                    await service.daemon.submit(slot.device_id, start)
                    await service.daemon.submit(
                        slot.device_id, SessionCommand(action="confirm_head")
                    )
            await asyncio.sleep(0.05)


def junk_files(directory: Path, base: str, busy_gun: str, junk: int) -> list[tuple[str, Path]]:
    """Four files of junk lines, one per kind, for ``mosquitto_pub -l`` to read."""
    quarter = junk // 4
    kinds = [
        (f"{base}/nobody-1/set", json.dumps({"action": "start", "protocol": "glute"})),
        (f"{base}/{busy_gun}/set", "this is not json"),
        (f"{base}/{busy_gun}/set", "[" * 3000 + "]" * 3000),
        (f"{base}/{busy_gun}/set", json.dumps({"action": "start", "protocol": "glute"})),
    ]
    files = []
    for n, (topic, line) in enumerate(kinds):
        path = directory / f"junk-{n}.txt"
        path.write_text((line + "\n") * quarter)
        files.append((topic, path))
    return files


async def flood(port: int, files: list[tuple[str, Path]], spawned: Callable[[], None]) -> float:
    """Publish every line of ``files`` from one process each; return when the broker has all.

    ``spawned`` is called once the publishers run: lateness is measured from
    there, since starting a process is the benchmark's cost, not the daemon's.
    """
    binary = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
    began = time.perf_counter()
    processes = []
    for topic, path in files:
        with path.open("rb") as lines:
            processes.append(
                await asyncio.create_subprocess_exec(
                    binary,
                    "-p",
                    str(port),
                    "-q",
                    "1",
                    "-t",
                    topic,
                    "-l",
                    stdin=lines,
                    preexec_fn=as_service,
                )
            )
    spawned()
    for process in processes:
        await process.wait()
    return time.perf_counter() - began


async def ticker(period: float, worst: list[float]) -> None:
    """A bare 50 Hz loop against absolute deadlines, noting its worst lateness."""
    loop = asyncio.get_running_loop()
    deadline = loop.time()
    while True:
        deadline += period
        await asyncio.sleep(max(0.0, deadline - loop.time()))
        worst[0] = max(worst[0], loop.time() - deadline)


class Drain:
    """Samples a running count of refused messages: how many, from the first to the last."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count
        self.start = count()
        self.value = self.start
        self.first: float | None = None
        self.last = 0.0

    async def watch(self) -> None:
        while True:
            now = self._count()
            if now != self.value:
                at = time.perf_counter()
                if self.first is None:
                    self.first = at
                self.value, self.last = now, at
            await asyncio.sleep(0.002)

    async def until_quiet(self, quiet_s: float = 0.5) -> None:
        """Wait until the count has not moved for ``quiet_s``: all the broker passed on is in."""
        while time.perf_counter() - max(self.last, self.first or 0.0) < quiet_s:  # noqa: ASYNC110
            await asyncio.sleep(0.05)

    @property
    def drained(self) -> int:
        return self.value - self.start

    @property
    def span_s(self) -> float:
        return self.last - self.first if self.first is not None else 0.0


FLOOR_EVERY_S = 0.02  # as the commands process tells the daemon its counts


def floor_process(port: int) -> None:
    """The floor's own process: the commands process's kind of connection, counting only.

    Prints ``ready`` once subscribed, then its count every FLOOR_EVERY_S while it
    moves; ends at the end of stdin.
    """
    count = [0]

    def message(*_: Any) -> int:
        count[0] += 1
        return 0

    def report() -> None:
        told = 0
        while True:
            time.sleep(FLOOR_EVERY_S)
            if count[0] != told:
                told = count[0]
                print(told, flush=True)

    async def run() -> None:
        subscribed = asyncio.Event()
        client = gmqtt.Client("gunctl-floor")
        client.on_message = message
        client.on_subscribe = lambda *_: subscribed.set()
        await client.connect("127.0.0.1", port)
        client.subscribe(gmqtt.Subscription("floor/#", qos=SET_QOS))
        await subscribed.wait()
        print("ready", flush=True)
        threading.Thread(target=report, daemon=True).start()
        await asyncio.to_thread(sys.stdin.read)
        await client.disconnect()

    asyncio.run(run())


async def floor(port: int, files: list[tuple[str, Path]]) -> tuple[int, float, float]:
    """The same flood to the commands process's kind of connection (gmqtt, in a process of
    its own), doing nothing with what it gets but count.

    A bare 50 Hz ticker runs beside it in this process: how late a loop gets on
    this machine with no daemon at all.
    """
    worst = [0.0]
    received = [0]
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        f"from bench.mqtt_flood import floor_process; floor_process({port})",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert process.stdout is not None
    assert process.stdin is not None
    assert await process.stdout.readline() == b"ready\n"

    async def counts(stdout: asyncio.StreamReader) -> None:
        async for line in stdout:
            received[0] = int(line)

    counter = asyncio.create_task(counts(process.stdout))
    drain = Drain(lambda: received[0])
    watcher = asyncio.create_task(drain.watch())
    ticking: list[asyncio.Task[None]] = []
    await flood(
        port,
        [(f"floor/{n}", path) for n, (_, path) in enumerate(files)],
        lambda: ticking.append(asyncio.create_task(ticker(PERIOD_MS / 1000, worst))),
    )
    await drain.until_quiet()
    for task in (watcher, ticking[0], counter):
        task.cancel()
    process.stdin.close()
    await process.wait()
    return drain.drained, drain.span_s, worst[0] * 1000


def worst_late_ms(slots: list[DeviceSlot]) -> float:
    return 1000 * max(s.device.supervisor.loop_stats.max_late_s for s in slots)  # type: ignore[union-attr]


def restart_stats(slots: list[DeviceSlot]) -> None:
    for slot in slots:
        slot.device.supervisor.loop_stats = LoopStats()  # type: ignore[union-attr]


async def trial(
    service: Service,
    client: aiomqtt.Client,
    timer: StopTimes,
    port: int,
    files: list[tuple[str, Path]],
    on_stop_topic: bool,
) -> dict[str, Any]:
    slots = list(service.daemon.slots.values())
    await run_all(service, slots)
    target, others = slots[0], slots[1:]
    topics = service.bridge.topics
    drain = Drain(lambda: sum(service.bridge.rejected.values()))
    screened = Drain(lambda: service.bridge.setline.refused)
    watchers = [asyncio.create_task(d.watch()) for d in (drain, screened)]
    shed_before = service.bridge.rejected["overloaded"]
    published_s = await flood(port, files, lambda: restart_stats(others))
    times = timer.at[target.device_id]
    before = len(times)
    timer.arrived[target.device_id].clear()
    topic = topics.stop(target.device_id) if on_stop_topic else topics.set(target.device_id)
    asked = time.perf_counter()
    await client.publish(topic, json.dumps({"action": "stop"}), qos=1)
    try:
        await asyncio.wait_for(timer.arrived[target.device_id].wait(), 10)
        latency: float | None = times[before] - asked
    except TimeoutError:
        latency = None
    await drain.until_quiet()  # the rest of the flood: all the broker passed on is taken in
    for watcher in watchers:
        watcher.cancel()
    flooded_s = time.perf_counter() - asked + published_s
    late = worst_late_ms(others)
    # the machine's own noise: the same guns, as long again, with no flood
    restart_stats(others)
    await asyncio.sleep(flooded_s)
    return {
        "latency": latency,
        "late_ms": late,
        "quiet_late_ms": worst_late_ms(others),
        "drained": drain.drained,
        "drain_s": drain.span_s,
        "screened": screened.drained,
        "screened_s": screened.span_s,
        "shed": service.bridge.rejected["overloaded"] - shed_before,
        "most_waiting": service.bridge.setline.most_waiting,
    }


async def main(trials: int, junk: int, devices: int, hog_nice: int | None, nice: int) -> None:
    configure(level="error")
    beside, suffix, priority = describe(hog_nice, nice)
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GUNCTL_DATA_DIR"] = tmp
        with mosquitto(Path(tmp), preexec_fn=as_service) as port:
            results: list[tuple[bool, dict[str, Any]]] = []
            async with serving(port, "flood", devices) as service:
                gc.freeze()  # as gunctl serve does once started (Service.run)
                timer = StopTimes()
                for slot in service.daemon.slots.values():
                    timer.watch(slot)
                busy = list(service.daemon.slots)[-1]
                files = junk_files(Path(tmp), service.bridge.topics.base, busy, junk)
                async with aiomqtt.Client("127.0.0.1", port) as client:
                    for n in range(trials):
                        on_stop_topic = n % 2 == 0
                        results.append(
                            (
                                on_stop_topic,
                                await trial(service, client, timer, port, files, on_stop_topic),
                            )
                        )
            floors = [await floor(port, files) for _ in range(max(1, trials // 4))]
    rows = []
    for on_stop_topic, name in ((True, "stop topic (stop line)"), (False, "set topic")):
        mine = [r for s, r in results if s == on_stop_topic]
        if not mine:
            continue
        latencies = [r["latency"] for r in mine if r["latency"] is not None]
        drained = sum(r["drained"] for r in mine)
        rows.append(
            {
                "stop on": name,
                "trials": len(mine),
                "stops lost": len(mine) - len(latencies),
                **{f"stop {k} ms": v for k, v in percentiles(latencies).items() if k != "n"},
                "loop late max ms": round(max(r["late_ms"] for r in mine), 2),
                "loop late, median trial ms": round(median(r["late_ms"] for r in mine), 2),
                "quiet late max ms": round(max(r["quiet_late_ms"] for r in mine), 2),
                "junk drained": drained,
                "of it shed": sum(r["shed"] for r in mine),
                "most waiting": max(r["most_waiting"] for r in mine),
                "junk dropped by broker": junk * len(mine) - drained,
                "drained per s": round(drained / sum(r["drain_s"] for r in mine)),
                "screened per s": round(
                    sum(r["screened"] for r in mine) / sum(r["screened_s"] for r in mine)
                ),
            }
        )
    got = sum(n for n, _, _ in floors)
    rows.append(
        {
            **{key: "-" for key in rows[0]},
            "stop on": "(floor: the connection alone in a process, no daemon)",
            "trials": len(floors),
            "loop late max ms": round(max(late for _, _, late in floors), 2),
            "junk drained": got,
            "junk dropped by broker": junk * len(floors) - got,
            "drained per s": round(got / sum(s for _, s, _ in floors)),
        }
    )
    report(
        f"mqtt_flood{suffix}",
        f"{junk} junk messages then a stop, Mosquitto at defaults, {devices} guns running{beside} "
        f"(targets: 0 lost; stop topic p99 < {STOP_TOPIC_P99_MS:g} ms; set topic < "
        f"{SET_TOPIC_MAX_S:g} s; loop lateness < {PERIOD_MS:g} ms; {DRAIN_PER_S:,} refused/s)",
        rows,
        meta={
            "spec": SPEC,
            "junk": junk,
            "devices": devices,
            "qos": 1,
            "trials": trials,
            **priority,
        },
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="floods, each then a stop")
    parser.add_argument("--junk", type=int, default=10_000, help="junk messages per flood")
    parser.add_argument("--devices", type=int, default=4, help="simulated guns, all running")
    add_arguments(parser)
    args = parser.parse_args()
    own_session(args)
    with cpu_hog(args.hog) as hog_nice:
        nice = take_priority(args)  # before any thread starts: every thread inherits it
        asyncio.run(main(args.trials, args.junk, args.devices, hog_nice, nice))
