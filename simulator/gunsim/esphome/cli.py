"""``gunsim proxy``: simulated guns behind a fake ESPHome Bluetooth proxy, for trying gunctl.

It prints the ``--proxy`` value to give ``gunctl scan``, ``run``, ``probe`` or
``serve`` in another shell (with ``--encrypt``, a fresh key after the comma),
then serves until Ctrl-C. Several can run side by side, each on a loopback
address of its own, with the same seed (the same guns) heard at different
strengths.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
from typing import Any

import click

from gunctl.clock import Clock
from gunsim.signals import until_stopped


async def serve(options: dict[str, Any], key: str | None) -> None:
    from gunctl.specs.loader import load_specs
    from gunsim.device import SimDevice
    from gunsim.esphome.proxy import FakeProxy

    families: tuple[str, ...] = options["families"]
    count: int = options["count"]
    seed: int = options["seed"]
    name: str = options["name"]
    slots: int = options["slots"]
    specs = load_specs()
    unknown = [f for f in families if f not in specs]
    if unknown:
        raise click.BadParameter(
            f"unknown spec {', '.join(unknown)}; known: {', '.join(specs)}", param_hint="--family"
        )
    clock = Clock()
    proxy = FakeProxy(name, host=options["host"], psk=key, slots=slots)
    devices = []
    for n, family in enumerate(families or tuple(specs)):
        for i in range(count):
            device = SimDevice(specs[family], clock=clock, seed=seed + 100 * n + i)
            await device.start()
            devices.append(device)
            mac = f"C0:FF:EE:{seed % 256:02X}:{n:02X}:{i:02X}"  # the same guns for the same seed
            proxy.add(device, address=mac, rssi=options["rssi"])
    await proxy.start()
    click.echo(proxy.address + (f",{key}" if key else ""))
    for gun in proxy.guns.values():
        click.echo(f"# {gun.address}  {gun.name:<16} {gun.spec.name}  {gun.rssi} dBm", err=True)
    click.echo(f"# {name}: {slots} connection slots; Ctrl-C to stop", err=True)
    try:
        await until_stopped()
    finally:
        await proxy.aclose()
        for device in devices:
            await device.aclose()


@click.command("proxy")
@click.option(
    "--family", "families", multiple=True, help="Spec of the guns to simulate (default: every one)."
)
@click.option(
    "--count", type=click.IntRange(1, 50), default=1, show_default=True, help="Guns per spec."
)
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the guns.")
@click.option("--rssi", type=int, default=-60, show_default=True, help="How well it hears them.")
@click.option("--name", default="gunsim-proxy", show_default=True, help="The proxy's name.")
@click.option("--host", help="Loopback address to listen on (default: a free 127.x.y.z).")
@click.option(
    "--slots", type=click.IntRange(0, 9), default=3, show_default=True, help="Connection slots."
)
@click.option("--encrypt", is_flag=True, help="Noise-encrypted API with a fresh key.")
def proxy(encrypt: bool, **options: Any) -> None:
    """Serve simulated guns through a fake ESPHome Bluetooth proxy on loopback."""
    key = base64.b64encode(os.urandom(32)).decode() if encrypt else None
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(options, key))
