"""``gunsim bluez`` (or ``python -m gunsim.bluez``): simulated guns on a private D-Bus.

For trying gunctl with no radio.

It prints the ``export DBUS_SYSTEM_BUS_ADDRESS=...`` line to paste into another
shell; ``gunctl scan`` and ``gunctl run --device ...`` there talk to these guns
through bleak as they would to real ones. It runs until Ctrl-C.

A simulated gun has no hands to change its head, so this terminal lends it
yours: type a head (``thumb``) and Enter to fit it on every gun, or
``NAME_OR_ADDRESS HEAD`` for one gun; then confirm the change in gunctl.
``--scale`` runs the guns faster than real time, for tests (gunctl must be
given the same ``--time-scale``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from typing import TYPE_CHECKING

import click

from gunctl.clock import Clock
from gunsim.signals import until_stopped

if TYPE_CHECKING:
    from gunsim.bluez.fake import FakeBluez


async def serve(
    families: tuple[str, ...], count: int, seed: int, address: str, scale: float = 1.0
) -> None:
    from gunctl.cli.boundary import quiet_background_errors
    from gunctl.specs.loader import load_specs
    from gunsim.bluez.fake import FakeBluez
    from gunsim.device import SimDevice

    quiet_background_errors()
    specs = load_specs()
    unknown = [f for f in families if f not in specs]
    if unknown:
        raise click.BadParameter(
            f"unknown spec {', '.join(unknown)}; known: {', '.join(specs)}", param_hint="--family"
        )
    clock = Clock(scale)
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
    click.echo("# type a head (e.g. thumb) and Enter to fit it; Ctrl-C to stop", err=True)
    hands = asyncio.create_task(_fit_heads(fake))
    try:
        await until_stopped()
    finally:
        hands.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await hands
        await fake.aclose()
        for device in devices:
            await device.aclose()


async def _fit_heads(fake: FakeBluez) -> None:
    """Read ``HEAD`` or ``NAME_OR_ADDRESS HEAD`` lines from stdin and fit the head."""
    from gunctl.heads import Head

    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        return  # no stdin at all
    if not (sys.stdin.isatty() or stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)):
        return  # /dev/null or a file: no hands to lend
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    heads = [h.value for h in Head]
    while line := (await reader.readline()).decode(errors="replace"):
        words = line.split()
        if not words:
            continue
        *which, head = words
        guns = [
            p
            for p in fake.peripherals.values()
            if not which or which[0] in (p.name, p.address, p.address.upper())
        ]
        if head not in heads or not guns:
            click.echo(
                f"# no such head or gun: {line.strip()!r}; heads: {', '.join(heads)}", err=True
            )
            continue
        for p in guns:
            p.device.fit_head(Head(head))
            click.echo(f"# fitted the {head} head on {p.name} ({p.address})", err=True)


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
@click.option(
    "--scale",
    type=click.FloatRange(0, 100, min_open=True),
    default=1.0,
    show_default=True,
    help="Run the guns faster than real time (tests; give gunctl the same --time-scale).",
)
def bluez(families: tuple[str, ...], count: int, seed: int, scale: float) -> None:
    """Serve simulated guns through a fake BlueZ on a private D-Bus."""
    from gunsim.bluez.bus import BusUnavailableError, private_bus_sync

    try:
        with private_bus_sync() as address, contextlib.suppress(KeyboardInterrupt):
            sys.stdout.flush()
            asyncio.run(serve(families, count, seed, address, scale))
    except BusUnavailableError as exc:
        raise click.ClickException(str(exc)) from exc
