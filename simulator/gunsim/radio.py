"""What a simulated gun shows over the air, the same whichever radio stack relays it.

Its GATT table, its advertised name and manufacturer data, and believable
addresses. The fake BlueZ turns the table into D-Bus objects and the fake
ESPHome proxy into protobuf service lists; both take the handles from here, so a gun has the same
handles however it is reached. The spec's service holds telemetry (notify) and
the command characteristic (write, write without response, or both, as the
spec's commands need); the standard Battery Service follows where the spec has
one. Each notifying characteristic has a Client Characteristic Configuration
descriptor right after its value.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from gunctl.specs.models import DeviceSpec, hex_to_bytes

COMMAND = "command"
TELEMETRY = "telemetry"
BATTERY = "battery"
CCCD_UUID = "00002902-0000-1000-8000-00805f9b34fb"


@dataclass(frozen=True)
class Characteristic:
    role: str  # COMMAND, TELEMETRY or BATTERY
    uuid: str
    flags: tuple[str, ...]  # BlueZ's words: read, write, write-without-response, notify
    handle: int  # the declaration; the value is at handle + 1
    cccd_handle: int | None  # the notification switch, for characteristics that notify

    @property
    def value_handle(self) -> int:
        return self.handle + 1


@dataclass(frozen=True)
class Service:
    uuid: str
    handle: int
    characteristics: tuple[Characteristic, ...]


def gatt_table(spec: DeviceSpec) -> tuple[Service, ...]:
    gatt = spec.gatt
    kinds = {m.with_response for m in spec.commands.values()}
    command_flags = tuple(
        flag
        for flag, wanted in (("write", True), ("write-without-response", False))
        if wanted in kinds
    )
    wanted_services = [
        (
            gatt.service,
            [(TELEMETRY, gatt.telemetry, ("notify",)), (COMMAND, gatt.command, command_flags)],
        )
    ]
    if gatt.battery is not None:
        wanted_services.append(
            (gatt.battery.service, [(BATTERY, gatt.battery.characteristic, ("read", "notify"))])
        )
    services = []
    handle = 0x000A
    for service_uuid, chars in wanted_services:
        service_handle = handle
        handle += 1
        made = []
        for role, uuid, flags in chars:
            cccd = handle + 2 if "notify" in flags else None
            made.append(Characteristic(role, uuid, flags, handle, cccd))
            handle += 3 if cccd is not None else 2
        services.append(Service(service_uuid, service_handle, tuple(made)))
        handle += 1
    return tuple(services)


def manufacturer_data(spec: DeviceSpec, address: str) -> dict[int, bytes]:
    """The spec's manufacturer data (its prefix, then the last two address bytes)."""
    if not spec.identity.manufacturer_data:
        return {}
    entry = spec.identity.manufacturer_data[0]
    prefix = hex_to_bytes(entry.prefix) if entry.prefix else b""
    return {entry.company_id: prefix + bytes.fromhex(address.replace(":", ""))[-2:]}


def advertised_name(spec: DeviceSpec, address: str) -> str:
    """A name the spec recognises: the first exact one, or a wildcard filled from the address."""
    names = spec.identity.names
    for name in names:
        if "*" not in name:
            return name
    if names:
        return names[0].replace("*", address.replace(":", "")[-4:], 1).replace("*", "")
    return f"gun-{address.replace(':', '')[-4:]}"


def random_mac(index: int, rng: random.Random) -> str:
    # A static random address: the top two bits of the first byte are set.
    head = 0xC0 | rng.randrange(0x40)
    tail = [rng.randrange(256) for _ in range(4)]
    return ":".join(f"{b:02X}" for b in [head, *tail, index & 0xFF])
