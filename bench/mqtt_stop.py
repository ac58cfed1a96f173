"""Stop over MQTT: from the stop command published to the stop frame written, 1 and 16 guns.

A private Mosquitto on loopback, ``gunctl serve``'s daemon and bridge in this
process with simulated guns in real time (scale 1), all of them running a
session. A client publishes ``{"action": "stop"}`` to one gun's ``set`` topic
and the time until that gun's link is handed the stop frame is measured. In
the same run, on the same loaded daemon, the floor: the Supervisor's own
request-to-stop-frame time, with no MQTT in between.

    python -m bench.mqtt_stop [--samples 100] [--devices 1,16]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import getpass
import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiomqtt

from bench.report import percentiles, report
from gunctl.config import load_settings
from gunctl.daemon import DeviceSlot
from gunctl.links.base import Endpoint
from gunctl.logs import configure
from gunctl.mqtt.service import Service
from gunctl.profiles.loader import load_catalogue
from gunctl.requests import SessionAction, SessionCommand, StartCommand
from gunctl.specs.codec import Codec
from gunctl.specs.loader import get_spec
from gunctl.specs.messages import Stop

SPEC = "gunctl-open"
TARGET_P99_MS = 10.0


@contextlib.contextmanager
def mosquitto(directory: Path, preexec_fn: Callable[[], None] | None = None) -> Iterator[int]:
    """A private Mosquitto on loopback; ``preexec_fn`` runs in its process before it starts."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    config = directory / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"user {getpass.getuser()}\n"
    )
    binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    process = subprocess.Popen(
        [binary, "-c", str(config)], stderr=subprocess.DEVNULL, preexec_fn=preexec_fn
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                raise RuntimeError("mosquitto did not start")
            time.sleep(0.02)
        yield port
    finally:
        process.kill()
        process.wait()


class StopTimes:
    """Notes when each gun's link is handed a stop frame."""

    def __init__(self) -> None:
        self.frame = Codec(get_spec(SPEC)).encode_command(Stop())
        self.at: dict[str, list[float]] = {}
        self.arrived: dict[str, asyncio.Event] = {}

    def watch(self, slot: DeviceSlot) -> None:
        device = slot.device
        assert device is not None
        link = device.link
        original = link.write
        times = self.at.setdefault(slot.device_id, [])
        event = self.arrived.setdefault(slot.device_id, asyncio.Event())

        async def write(endpoint: Endpoint, data: bytes, *, with_response: bool) -> None:
            if data == self.frame:
                times.append(time.perf_counter())
                event.set()
            await original(endpoint, data, with_response=with_response)

        link.write = write  # type: ignore[method-assign]


def own_muscles(directory: Path, count: int) -> Path:
    """A profiles folder in which gun ``n`` (from 1) has a muscle and a protocol of its own.

    Every gun of one daemon, simulated ones too, books its sessions in one
    person's exposure ledger, so four guns running the glute protocol on the
    same side at once pass its 48-hour cap and the fourth start is refused, as
    it should be. These benches measure MQTT, not the ledger: gun ``n`` runs
    protocol ``bench-n`` on a made-up muscle ``bench-n`` with the gluteus
    maximus's envelope (one 60 s hold a side). Each start is still checked and
    booked in the ledger; the guns only stop sharing one muscle. The 270 s a
    side over 48 hours leave room for about 30 flood trials on gun 1.
    """
    folder = directory / "bench-profiles"
    (folder / "protocols").mkdir(parents=True, exist_ok=True)
    envelope = load_catalogue().muscles["gluteus-maximus"].model_dump(mode="json")
    muscles = {f"bench-{n}": {**envelope, "name": f"Bench muscle {n}"} for n in range(1, count + 1)}
    (folder / "muscles.yaml").write_text(json.dumps({"muscles": muscles}))  # JSON is YAML
    for name in muscles:
        step = {"muscle": name, "side": "both", "head": "ball", "intensity": 0.5, "hold_s": 60}
        step |= {"ramp_s": 2, "rest_s": 5, "placement": "anywhere"}
        protocol = {"name": name, "title": name, "description": "a bench's own muscle"}
        path = folder / "protocols" / f"{name}.yaml"
        path.write_text(json.dumps({**protocol, "steps": [step]}))
    return folder


def protocol_of(slot: DeviceSlot) -> str:
    """The protocol of the gun's own muscle (:func:`own_muscles`): ``bench-<its number>``."""
    return f"bench-{slot.target}"


@contextlib.asynccontextmanager
async def serving(port: int, node_id: str, devices: int) -> AsyncIterator[Service]:
    """``gunctl serve`` on ``devices`` simulated guns, connected (both lines) to the broker.

    Each gun has a muscle of its own (:func:`own_muscles`), in a folder beside
    ``GUNCTL_DATA_DIR``'s history.
    """
    folder = own_muscles(Path(os.environ["GUNCTL_DATA_DIR"]), devices)
    settings = load_settings(
        None,
        node_id=node_id,
        mqtt={"host": "127.0.0.1", "port": port},
        devices={"sim": devices, "sim_spec": SPEC},
        red_flags_acknowledged=True,
        log_level="error",
    )
    service = Service(settings, catalogue=load_catalogue(folder))
    await service.start()
    try:
        await service.daemon.wait_connected(10)
        await asyncio.wait_for(service.bridge.connected.wait(), 10)
        await asyncio.wait_for(service.bridge.stopline.connected.wait(), 10)
        await asyncio.wait_for(service.bridge.setline.connected.wait(), 10)
        yield service
    finally:
        await service.stop()


async def start_all(service: Service, slots: list[DeviceSlot]) -> None:
    """A session on every gun, motor running (head confirmed, ramp begun)."""
    for slot in slots:
        await service.daemon.execute(
            slot.device_id, StartCommand(action="start", protocol=protocol_of(slot), side="left")
        )
        await service.daemon.execute(slot.device_id, SessionCommand(action="confirm_head"))
    # the setpoint has no event to wait on
    while not all(  # noqa: ASYNC110
        s.device is not None and not s.device.supervisor.driver.setpoint.stopped for s in slots
    ):
        await asyncio.sleep(0.005)


async def measure(port: int, count: int, samples: int) -> dict[str, list[float]]:
    timer = StopTimes()
    mqtt: list[float] = []
    direct: list[float] = []
    rng = random.Random(count)
    async with serving(port, f"bench{count}", count) as service:
        slots = list(service.daemon.slots.values())
        for slot in slots:
            timer.watch(slot)
        async with aiomqtt.Client("127.0.0.1", port, protocol=aiomqtt.ProtocolVersion.V5) as client:
            while len(mqtt) < samples or len(direct) < samples:
                await start_all(service, slots)
                await asyncio.sleep(0.1 + rng.random() * 0.02)  # land anywhere in a tick
                for n, slot in enumerate(slots):
                    supervisor = slot.device.supervisor  # type: ignore[union-attr]
                    times = timer.at[slot.device_id]
                    before = len(times)
                    arrived = timer.arrived[slot.device_id]
                    arrived.clear()
                    if (n + len(mqtt) + len(direct)) % 2 == 0 and len(mqtt) < samples:
                        asked = time.perf_counter()
                        await client.publish(
                            service.bridge.topics.set(slot.device_id),
                            json.dumps({"action": "stop"}),
                            qos=1,
                        )
                        await asyncio.wait_for(arrived.wait(), 5)
                        mqtt.append(times[before] - asked)
                    elif len(direct) < samples:
                        asked = time.perf_counter()
                        await supervisor.request(SessionAction("stop"))
                        direct.append(times[before] - asked)
                    else:
                        await supervisor.request(SessionAction("stop"))
                    await asyncio.sleep(rng.random() * 0.01)
                await asyncio.sleep(0.05)
    return {"mqtt": mqtt[:samples], "direct": direct[:samples]}


async def main(samples: int, counts: list[int]) -> None:
    configure(level="error")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["GUNCTL_DATA_DIR"] = tmp
        with mosquitto(Path(tmp)) as port:
            for count in counts:
                result = await measure(port, count, samples)
                rows.append(
                    {
                        "devices": count,
                        "path": "MQTT stop published -> stop frame written",
                        **percentiles(result["mqtt"]),
                    }
                )
                rows.append(
                    {
                        "devices": count,
                        "path": "in-process request -> stop frame written",
                        **percentiles(result["direct"]),
                    }
                )
    report(
        "mqtt_stop",
        f"Stop latency in ms (target: MQTT p99 under {TARGET_P99_MS:g} ms on loopback)",
        rows,
        meta={"spec": SPEC, "samples": samples, "broker": "mosquitto on 127.0.0.1", "qos": 1},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100, help="stops measured per path")
    parser.add_argument("--devices", default="1,16", help="comma-separated gun counts")
    args = parser.parse_args()
    asyncio.run(main(args.samples, [int(n) for n in args.devices.split(",")]))
