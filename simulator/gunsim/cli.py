"""``gunsim``: run a simulated device from the terminal and watch its telemetry.

``gunsim run gunctl-open --seconds 30 --speed 2400 --person random`` switches a
device on, connects to it through SimLink as a minimal host would (set the
speed, send keepalives, poll where the spec polls), and prints one line of
decoded telemetry per interval. ``--scale 10`` runs ten times faster than real
time; ``--fault AT:KIND[:key=value,...]`` schedules a fault (see
``gunsim.faults``), e.g. ``--fault 5:silence:duration_s=2``.

``gunsim bluez`` serves simulated guns through a fake BlueZ on a private D-Bus
instead, for gunctl to reach through bleak (see ``gunsim.bluez.cli``), and
``gunsim proxy`` through a fake ESPHome Bluetooth proxy (``gunsim.esphome.cli``).
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import click

from gunctl.cli.boundary import Bounded
from gunctl.clock import Clock
from gunctl.specs.loader import get_spec, load_specs
from gunctl.specs.messages import (
    Command,
    SetLevel,
    SetSpeed,
    Status,
    Stop,
)
from gunctl.specs.models import DeviceSpec
from gunsim.bluez.cli import bluez
from gunsim.device import Load, SimDevice
from gunsim.esphome.cli import proxy
from gunsim.faults import FAULT_ADAPTER, Fault
from gunsim.host import Host
from gunsim.person import RandomPerson, ScriptedPerson


@click.group(cls=Bounded, name="gunsim")
def main() -> None:
    """The gunctl device simulator."""


main.add_command(bluez)
main.add_command(proxy)


@main.command("list")
def list_specs() -> None:
    """The device families the simulator can play."""
    for name, spec in load_specs().items():
        click.echo(f"{name}\t{spec.title}")


def _spec(name_or_file: str) -> DeviceSpec:
    """A shipped family by name, or a spec file by path."""
    from gunctl.datafile import InvalidFileError
    from gunctl.specs.loader import find_spec

    try:
        return find_spec(name_or_file)
    except (KeyError, InvalidFileError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) else str(exc)
        raise click.BadParameter(message, param_hint="FAMILY") from exc


@main.command()
@click.argument("family")
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True),
    required=True,
    help="The capture file to write (btsnoop).",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--hold", type=float, default=2.0, show_default=True, help="Seconds per setpoint.")
@click.option(
    "--scale",
    type=click.FloatRange(0, min_open=True),
    default=20.0,
    show_default=True,
    help="Time speed-up.",
)
@click.option(
    "--btmon", is_flag=True, help="Write the Linux btmon datalink instead of Android's HCI H4."
)
def record(family: str, output: str, seed: int, hold: float, scale: float, btmon: bool) -> None:
    """Record a simulated FAMILY session (a name, or a spec file) as a btsnoop capture."""
    from pathlib import Path

    from gunctl.capture.btsnoop import Datalink
    from gunsim.radio import advertised_name
    from gunsim.record import peer_address, record_session, write_capture

    spec = _spec(family)
    frames = record_session(spec, seed=seed, hold_s=hold)
    datalink = Datalink.MONITOR if btmon else Datalink.H4
    try:
        name = advertised_name(spec, peer_address())
        records = write_capture(Path(output), frames, datalink, name)
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc.strerror or exc}") from exc
    click.echo(f"{output}: {records} records, {len(frames)} ATT PDUs of {spec.name}")


def parse_fault(text: str) -> tuple[float, Fault]:
    """``AT:KIND[:key=value,...]`` -> (seconds, fault)."""
    parts = text.split(":", 2)
    if len(parts) < 2:
        raise click.BadParameter(f"{text!r}: expected AT:KIND[:key=value,...]")
    values: dict[str, Any] = {"kind": parts[1]}
    if len(parts) == 3 and parts[2]:
        for item in parts[2].split(","):
            key, _, value = item.partition("=")
            values[key] = json.loads(value) if value else True
    try:
        return float(parts[0]), FAULT_ADAPTER.validate_python(values)
    except ValueError as exc:
        raise click.BadParameter(f"{text!r}: {exc}") from exc


@main.command()
@click.argument("spec_name", metavar="SPEC")
@click.option(
    "--seconds",
    type=click.FloatRange(0, min_open=True),
    default=10.0,
    show_default=True,
    help="How long to run.",
)
@click.option("--speed", type=int, help="Speed in ppm (default: the spec's top speed).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--scale",
    type=click.FloatRange(0, 1000, min_open=True),
    default=1.0,
    show_default=True,
    help="Time speed-up.",
)
@click.option(
    "--person",
    type=click.Choice(["none", "random", "steady"]),
    default="none",
    show_default=True,
    help="Who holds the gun: nobody, a seeded random person, or a steady 30 N lean.",
)
@click.option(
    "--every",
    type=click.FloatRange(0, min_open=True),
    default=1.0,
    show_default=True,
    help="Print interval, s.",
)
@click.option("--fault", "faults", multiple=True, help="AT:KIND[:key=value,...]")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def run(
    spec_name: str,
    seconds: float,
    speed: int | None,
    seed: int,
    scale: float,
    person: str,
    every: float,
    faults: tuple[str, ...],
    as_json: bool,
) -> None:
    """Run a SPEC device for a while, printing its telemetry."""
    try:
        spec = get_spec(spec_name)
    except KeyError as exc:
        raise click.BadParameter(str(exc.args[0]), param_hint="SPEC") from exc
    script = [parse_fault(f) for f in faults]
    load: Load | None = None
    if person == "random":
        load = RandomPerson(seed)
    elif person == "steady":
        load = ScriptedPerson([(1e9, 30.0)])
    asyncio.run(_run(spec, seconds, speed, seed, scale, load, every, script, as_json))


def _start_command(spec: DeviceSpec, speed: int | None) -> Command:
    levels = spec.capabilities.levels_ppm
    if levels is not None:
        wanted = speed or levels[-1]
        return SetLevel(level=min(range(len(levels)), key=lambda i: abs(levels[i] - wanted)) + 1)
    return SetSpeed(ppm=speed or spec.capabilities.max_ppm)


async def _run(
    spec: DeviceSpec,
    seconds: float,
    speed: int | None,
    seed: int,
    scale: float,
    person: Load | None,
    every: float,
    script: list[tuple[float, Fault]],
    as_json: bool,
) -> None:
    clock = Clock(scale)
    async with SimDevice(spec, clock=clock, seed=seed, person=person) as device:
        device.faults.script([(at, fault) for at, fault in script])
        host = Host(device)
        await host.connect()
        await host.send(_start_command(spec, speed))
        host.start_keepalive()
        end = clock.now() + seconds
        next_line = clock.now() + every
        while clock.now() < end and host.link.connected:
            await host.tick()  # polls where the spec polls, else waits one telemetry period
            if clock.now() >= next_line:
                _print(device, host.latest(), host.bad, as_json)
                next_line += every
        if host.link.connected:
            await host.send(Stop())
        reason = host.link.reason
        await host.close()
        if reason not in (None, "requested"):
            click.echo(f"link ended: {reason}", err=True)


def _print(device: SimDevice, status: Status | None, bad: int, as_json: bool) -> None:
    state = device.state
    reported = (
        {}
        if status is None
        else status.model_dump(mode="json", exclude_none=True, exclude={"kind", "undocumented"})
    )
    if as_json:
        line = {
            "t": round(device.elapsed, 3),
            "reported": reported,
            "true": {
                "running": state.running,
                "speed_ppm": round(state.speed_ppm),
                "current_a": round(state.current_a, 2),
                "force_n": round(state.force_n, 1),
                "temperature_c": round(state.temperature_c, 1),
                "battery_pct": round(state.battery_pct, 1),
                "faults": sorted(state.faults),
            },
            "bad_frames": bad,
        }
        click.echo(json.dumps(line, sort_keys=True))
        return
    shown = " ".join(f"{k}={v}" for k, v in reported.items() if k != "faults")
    faults = ",".join(sorted(state.faults)) or "-"
    click.echo(
        f"{device.elapsed:8.2f}s  true: {state.speed_ppm:5.0f} ppm {state.current_a:5.2f} A "
        f"{state.force_n:5.1f} N {state.temperature_c:5.1f} C {state.battery_pct:5.1f} %  "
        f"faults {faults}  |  reported: {shown or '(nothing)'}"
    )
