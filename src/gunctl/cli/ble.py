"""``gunctl scan`` and ``gunctl probe``: what is advertising nearby, and what a device offers.

``probe`` connects to any BLE device, lists its services and characteristics
with their flags, reads what is readable, and records a few seconds of
notifications. With ``--json`` it also prints a ``spec`` skeleton (identity and
GATT roles guessed from the flags) to start a new firmware spec file from.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gunctl.cli.output import EXIT_INVALID, EXIT_UNREACHABLE, emit, json_option, to_text
from gunctl.cli.proxies import opened, proxy_option

if TYPE_CHECKING:
    from bleak import BleakClient

    from gunctl.links.proxy import Proxies, ProxyState
    from gunctl.links.proxy_config import ProxyConfig
    from gunctl.links.scan import Found

# Standard services a vendor protocol never lives in
_STANDARD_SERVICES = {
    "00001800-0000-1000-8000-00805f9b34fb",  # Generic Access
    "00001801-0000-1000-8000-00805f9b34fb",  # Generic Attribute
    "0000180a-0000-1000-8000-00805f9b34fb",  # Device Information
    "0000180f-0000-1000-8000-00805f9b34fb",  # Battery
}
_BATTERY_SERVICE = "0000180f-0000-1000-8000-00805f9b34fb"
_BATTERY_LEVEL = "00002a19-0000-1000-8000-00805f9b34fb"
_SIG_SUFFIX = "-0000-1000-8000-00805f9b34fb"


def _short(uuid: str) -> str:
    """``0000fff0-...`` -> ``fff0``; vendor UUIDs stay whole."""
    if uuid.startswith("0000") and uuid.endswith(_SIG_SUFFIX):
        return uuid[4:8]
    return uuid


def _unreachable(message: str) -> None:
    click.echo(f"gunctl: {message}", err=True)
    sys.exit(EXIT_UNREACHABLE)


@click.command()
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=120),
    default=5.0,
    show_default=True,
    help="Seconds to listen for advertisements.",
)
@proxy_option
@json_option
def scan(timeout: float, proxies: list[ProxyConfig], as_json: bool) -> None:
    """List BLE devices nearby and the firmware spec each one matches.

    With proxies, what they hear is merged with the local adapter's (if there
    is one), each device showing who heard it and how well, and the proxies are
    listed with their free connection slots.
    """
    from rich.console import Console

    from gunctl.errors import BluetoothUnavailableError

    console = Console(stderr=True)
    spinner = (
        console.status(f"Listening for guns for {timeout:g} s…")
        if console.is_terminal and not as_json
        else contextlib.nullcontext()
    )
    try:
        with spinner:
            found, states = asyncio.run(_scan(timeout, proxies))
    except BluetoothUnavailableError as exc:
        _unreachable(str(exc))
    rows = [f.as_dict() for f in found]
    if not proxies:
        emit(rows, as_json, _render_found)
        return
    result = {"devices": rows, "proxies": [s.as_dict() for s in states]}
    emit(result, as_json, lambda r: _render_proxies(r["proxies"]) + "\n\n" + _render_found(rows))


async def _scan(timeout: float, configs: list[ProxyConfig]) -> tuple[list[Found], list[ProxyState]]:
    from gunctl.errors import BluetoothUnavailableError
    from gunctl.links.scan import merge
    from gunctl.links.scan import scan as local_scan

    if not configs:
        return await local_scan(timeout), []
    async with opened(configs) as proxies:
        assert proxies is not None
        local = asyncio.create_task(local_scan(timeout))
        await asyncio.sleep(timeout)
        try:
            heard_here = await local
        except BluetoothUnavailableError:
            heard_here = []  # no adapter here: the proxies are the radios
        return merge(heard_here, proxies.found()), proxies.states()


def _render_found(rows: list[dict[str, Any]]) -> str:
    from rich.table import Table

    if not rows:
        return "no devices heard"
    table = Table("address", "name", "RSSI", "spec", "matched by", "heard by", box=None)
    for r in rows:
        heard_by = ", ".join(f"{h['source']} ({h['rssi']})" for h in r["sources"])
        table.add_row(
            r["address"],
            r["name"] or "-",
            str(r["rssi"]),
            r["spec"] or "-",
            r["match"] or "-",
            heard_by or "-",
        )
    return to_text(table)


def _render_proxies(rows: list[dict[str, Any]]) -> str:
    from rich.table import Table

    table = Table("proxy", "address", "slots", "free", box=None)
    for r in rows:
        if r["reachable"]:
            table.add_row(r["name"], r["address"] or "-", str(r["slots"]), str(r["free"]))
        else:
            table.add_row(r["name"], r["address"] or "-", "unreachable", "-")
    return to_text(table)


@click.command()
@click.argument("address")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, max=600),
    help="Seconds to record notifications for.  [default: 3, or 60 with --record]",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0.1, max=120),
    default=10.0,
    show_default=True,
    help="Seconds to look for the device.",
)
@click.option(
    "--record",
    is_flag=True,
    help="Save the GATT table and notifications as a test fixture "
    "(FIXTURES/<family>/<model>_<firmware>.json).",
)
@click.option(
    "--fixtures",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("tests/fixtures"),
    show_default=True,
    help="Where --record saves fixtures.",
)
@proxy_option
@json_option
def probe(
    address: str,
    seconds: float | None,
    timeout: float,
    record: bool,
    fixtures: Path,
    proxies: list[ProxyConfig],
    as_json: bool,
) -> None:
    """Connect to ADDRESS (or an advertised name) and dump its GATT table and notifications."""
    from gunctl.links.base import ConnectError

    if not address.strip():
        click.echo("gunctl: give a device address or name", err=True)
        sys.exit(EXIT_INVALID)
    listen = seconds if seconds is not None else (60.0 if record else 3.0)
    try:
        result = asyncio.run(_probe(address, listen, timeout, proxies))
    except ConnectError as exc:
        _unreachable(str(exc))
    if record:
        result["fixture"] = str(_save_fixture(result, listen, fixtures))
    emit(result, as_json, _render_probe)


def _save_fixture(result: dict[str, Any], seconds: float, root: Path) -> Path:
    from gunctl.capture.fixture import from_probe, write_fixture

    fixture = from_probe(result, result["family"], seconds)
    try:
        return write_fixture(fixture, root)
    except OSError as exc:
        click.echo(f"gunctl: cannot save the fixture in {root}: {exc.strerror or exc}", err=True)
        sys.exit(EXIT_INVALID)


async def _probe(
    address: str, seconds: float, timeout: float, configs: list[ProxyConfig]
) -> dict[str, Any]:
    async with opened(configs) as proxies:
        return await _probe_through(address, seconds, timeout, proxies)


async def _probe_through(
    address: str, seconds: float, timeout: float, proxies: Proxies | None
) -> dict[str, Any]:
    from bleak.exc import BleakError
    from bleak_retry_connector import (
        BleakClientWithServiceCache,
        close_stale_connections_by_address,
        establish_connection,
    )

    from gunctl.links.base import ConnectError
    from gunctl.links.proxy import PROXY_CLIENT
    from gunctl.links.scan import advertisement, find_advertised
    from gunctl.specs.loader import load_specs
    from gunctl.specs.matching import match

    client_class: type[BleakClient] = BleakClientWithServiceCache
    if proxies is None:
        device, adv = await find_advertised(address, timeout)
    else:
        heard = await proxies.find(address, timeout)
        device, adv, client_class = heard.device, heard.advertisement, PROXY_CLIENT
    hit = match(advertisement(device, adv), load_specs().values())
    errors: tuple[type[Exception], ...] = (BleakError, TimeoutError, EOFError, OSError)
    try:
        await close_stale_connections_by_address(device.address)
        client = await establish_connection(
            client_class, device, device.name or device.address, max_attempts=2
        )
    except errors as exc:
        raise ConnectError(f"cannot connect to {device.address}: {exc}") from exc
    try:
        services = await _read_gatt(client)
        notes = await _record(client, seconds)
    except errors as exc:
        raise ConnectError(f"{device.address} went away during the probe: {exc}") from exc
    finally:
        with contextlib.suppress(*errors):
            await client.disconnect()
    name = adv.local_name or device.name
    advertised = {
        "address": device.address,
        "name": name,
        "rssi": adv.rssi,
        "services": list(adv.service_uuids),
        "manufacturer_data": {f"0x{k:04X}": v.hex() for k, v in adv.manufacturer_data.items()},
    }
    return {
        "device": advertised,
        "family": hit.spec.name if hit else None,
        "services": services,
        "notifications": notes,
        "spec": _skeleton(name, adv.service_uuids, adv.manufacturer_data, services),
    }


async def _read_gatt(client: BleakClient) -> list[dict[str, Any]]:
    from bleak.exc import BleakError

    services = []
    for service in client.services:
        chars = []
        for char in service.characteristics:
            entry: dict[str, Any] = {
                "uuid": char.uuid,
                "handle": char.handle,
                "flags": list(char.properties),
                "descriptors": [d.uuid for d in char.descriptors],
            }
            if "read" in char.properties:
                try:
                    entry["value"] = bytes(await client.read_gatt_char(char)).hex(" ")
                except (TimeoutError, BleakError) as exc:
                    entry["read_error"] = str(exc)
            chars.append(entry)
        services.append({"uuid": service.uuid, "handle": service.handle, "characteristics": chars})
    return services


async def _record(client: BleakClient, seconds: float) -> list[dict[str, Any]]:
    from bleak.backends.characteristic import BleakGATTCharacteristic
    from bleak.exc import BleakError

    loop = asyncio.get_running_loop()
    start = loop.time()
    notes: list[dict[str, Any]] = []

    def receive(char: BleakGATTCharacteristic, data: bytearray) -> None:
        notes.append(
            {"t": round(loop.time() - start, 4), "uuid": char.uuid, "hex": bytes(data).hex(" ")}
        )

    subscribed = []
    for service in client.services:
        for char in service.characteristics:
            if {"notify", "indicate"} & set(char.properties):
                try:
                    await client.start_notify(char, receive)
                    subscribed.append(char)
                except BleakError:
                    continue
    if seconds > 0:
        await asyncio.sleep(seconds)
    for char in subscribed:
        with contextlib.suppress(BleakError):
            await client.stop_notify(char)
    return notes


def _skeleton(
    name: str | None,
    advertised: list[str],
    manufacturer_data: dict[int, bytes],
    services: list[dict[str, Any]],
) -> dict[str, Any]:
    """The parts of a firmware spec a probe can tell; frames and commands are for a person."""
    vendor = [s for s in services if s["uuid"] not in _STANDARD_SERVICES]

    def pick(flags: set[str]) -> str | None:
        for service in vendor:
            for char in service["characteristics"]:
                if flags & set(char["flags"]):
                    return str(char["uuid"])
        return None

    command = pick({"write", "write-without-response"})
    telemetry = pick({"notify", "indicate"})
    home = next(
        (
            s["uuid"]
            for s in vendor
            if any(c["uuid"] in (command, telemetry) for c in s["characteristics"])
        ),
        None,
    )
    gatt: dict[str, Any] = {
        "service": home and _short(home),
        "command": command and _short(command),
        "telemetry": telemetry and _short(telemetry),
    }
    if any(
        s["uuid"] == _BATTERY_SERVICE
        and any(c["uuid"] == _BATTERY_LEVEL for c in s["characteristics"])
        for s in services
    ):
        gatt["battery"] = {"service": "180f", "characteristic": "2a19"}
    slug = re.sub(r"[^a-z0-9]+", "-", (name or "unknown").lower()).strip("-") or "unknown"
    return {
        "name": slug,
        "title": name or "unknown device",
        "source": "recorded with gunctl probe; frames, commands and reports still to write",
        "identity": {
            "names": [name] if name else [],
            "services": [_short(u) for u in advertised] or ([_short(home)] if home else []),
            "manufacturer_data": [
                {"company_id": cid, "prefix": data[:2].hex().upper()}
                for cid, data in manufacturer_data.items()
            ],
        },
        "gatt": gatt,
    }


def _render_probe(result: dict[str, Any]) -> str:
    from rich.console import Group
    from rich.table import Table

    device = result["device"]
    head = Table.grid(padding=(0, 2))
    head.add_row("device", f"{device['name'] or '-'} ({device['address']}), RSSI {device['rssi']}")
    head.add_row("advertises", ", ".join(_short(u) for u in device["services"]) or "-")
    for cid, data in device["manufacturer_data"].items():
        head.add_row("manufacturer data", f"{cid}: {data}")

    gatt = Table("service", "characteristic", "handle", "flags", "value", title="GATT", box=None)
    for service in result["services"]:
        gatt.add_row(_short(service["uuid"]), "", f"0x{service['handle']:04X}", "", "")
        for char in service["characteristics"]:
            gatt.add_row(
                "",
                _short(char["uuid"]),
                f"0x{char['handle']:04X}",
                ", ".join(char["flags"]),
                char.get("value") or char.get("read_error", ""),
            )

    notes = Table("t (s)", "characteristic", "bytes", title="notifications", box=None)
    for note in result["notifications"][:40]:
        notes.add_row(f"{note['t']:.3f}", _short(note["uuid"]), note["hex"])
    more = len(result["notifications"]) - 40
    parts: list[Any] = [head, gatt, notes]
    if more > 0:
        parts.append(f"... and {more} more (--json has them all)")
    if "fixture" in result:
        parts.append(f"fixture saved: {result['fixture']}")
    return to_text(Group(*parts))
