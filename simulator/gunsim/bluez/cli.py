"""``gunsim bluez`` (or ``python -m gunsim.bluez``): simulated guns on a private D-Bus.

For trying gunctl with no radio.

It prints the ``export DBUS_SYSTEM_BUS_ADDRESS=...`` line to paste into another
shell; ``gunctl scan`` and ``gunctl run --device ...`` there talk to these guns
through bleak as they would to real ones. It runs until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

import click

from gunctl.clock import Clock
from gunsim.signals import until_stopped


async def serve(families: tuple[str, ...], count: int, seed: int, address: str) -> None:
    from gunctl.specs.loader import load_specs
    from gunsim.bluez.fake import FakeBluez
    from gunsim.device import SimDevice

    specs = load_specs()
    unknown = [f for f in families if f not in specs]
    if unknown:
        raise click.BadParameter(
            f"unknown spec {', '.join(unknown)}; known: {', '.join(specs)}", param_hint="--family"
        )
    clock = Clock()
    fake = FakeBluez(address, seed=seed)
    devices = []
    for family in families or tuple(specs):
        for i in range(count):
            device = SimDevice(specs[family], clock=clock, seed=seed + i)
            await device.start()
            devices.append(device)
            fake.add(device)
    await fake.start()
    click.echo(f"export DBUS_SYSTEM_BUS_ADDRESS={address}")
    for p in fake.peripherals.values():
        click.echo(f"# {p.address}  {p.name:<16} {p.spec.name}", err=True)
    click.echo("# Ctrl-C to stop", err=True)
    try:
        await until_stopped()
    finally:
        await fake.aclose()
        for device in devices:
            await device.aclose()


@click.command("bluez")
@click.option(
    "--family", "families", multiple=True, help="Spec of the guns to simulate (default: every one)."
)
@click.option(
    "--count", type=click.IntRange(1, 50), default=1, show_default=True, help="Guns per spec."
)
@click.option(
    "--seed", type=int, default=0, show_default=True, help="Seed for addresses and physics."
)
def bluez(families: tuple[str, ...], count: int, seed: int) -> None:
    """Serve simulated guns through a fake BlueZ on a private D-Bus."""
    from gunsim.bluez.bus import BusUnavailableError, private_bus_sync

    try:
        with private_bus_sync() as address, contextlib.suppress(KeyboardInterrupt):
            sys.stdout.flush()
            asyncio.run(serve(families, count, seed, address))
    except BusUnavailableError as exc:
        raise click.ClickException(str(exc)) from exc
