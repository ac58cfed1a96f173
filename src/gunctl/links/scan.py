"""Finding guns: scan for advertisements and say which firmware spec each one speaks.

Matching follows ``gunctl.specs.matching`` (exact name, wildcard name,
manufacturer data, service). ``open_ble_link`` (defined in ``gunctl.links.ble``)
goes from an address or a name to an unconnected ``BleakLink`` and its spec.

Searches for guns share one scan per event loop (``_SharedScan``). BlueZ keeps
one discovery session per D-Bus client, and every scanner in a process is the
same client: a second ``StartDiscovery`` is refused (``InProgress``), and the
first search to finish would stop discovery for the others. When fifteen guns
connect at once, they all listen to one scan, which ends with the last search.
"""

from __future__ import annotations

import asyncio
import re
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from bleak import BleakScanner
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError

from gunctl.errors import BluetoothUnavailableError, DeviceNotFoundError, NoSpecError
from gunctl.specs.matching import Advertisement, Match, match
from gunctl.specs.models import DeviceSpec

_ADDRESS = re.compile(r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")


LOCAL = "local adapter"  # the source name of what this machine's own adapter heard


@dataclass(frozen=True)
class Hearing:
    """One source's view of one device: the local adapter or an ESPHome proxy."""

    source: str
    rssi: int
    free: int | None = None  # a proxy's free connection slots

    def as_dict(self) -> dict[str, object]:
        return {"source": self.source, "rssi": self.rssi, "free": self.free}


def _unavailable(exc: BaseException) -> BluetoothUnavailableError:
    """No BlueZ to scan with: say so, and what to do (bleak's own words are rarely clear)."""
    return BluetoothUnavailableError(
        f"no Bluetooth: BlueZ was not found on the system D-Bus ({exc}) — start it "
        "(sudo systemctl start bluetooth) and check the adapter is on (bluetoothctl power on); "
        "without a radio, try the simulator: gunctl run glute --sim"
    )


@dataclass(frozen=True)
class Found:
    address: str
    name: str | None
    rssi: int  # the strongest source's
    spec: str | None  # the firmware spec it matched, if any
    match: str | None  # how: exact_name, wildcard_name, manufacturer_data, service
    services: tuple[str, ...] = ()
    manufacturer_data: dict[int, str] = field(default_factory=dict)  # company id -> hex
    device: BLEDevice | None = field(default=None, compare=False, repr=False)
    sources: tuple[Hearing, ...] = ()  # who heard it, strongest first

    def as_dict(self) -> dict[str, object]:
        return {
            "address": self.address,
            "name": self.name,
            "rssi": self.rssi,
            "spec": self.spec,
            "match": self.match,
            "services": list(self.services),
            "manufacturer_data": {f"0x{k:04X}": v for k, v in self.manufacturer_data.items()},
            "sources": [h.as_dict() for h in self.sources],
        }


def advertisement(device: BLEDevice, adv: AdvertisementData) -> Advertisement:
    return Advertisement(
        name=adv.local_name or device.name,
        services=tuple(adv.service_uuids),
        manufacturer_data=dict(adv.manufacturer_data),
    )


def _specs(specs: Iterable[DeviceSpec] | None) -> list[DeviceSpec]:
    if specs is not None:
        return list(specs)
    from gunctl.specs.loader import load_specs

    return list(load_specs().values())


async def scan(timeout: float, specs: Iterable[DeviceSpec] | None = None) -> list[Found]:
    """Every device heard within ``timeout`` seconds; recognised guns first, then by signal."""
    try:
        heard = await BleakScanner.discover(timeout=timeout, return_adv=True)
    except (BleakError, OSError) as exc:
        raise _unavailable(exc) from exc
    candidates = _specs(specs)
    found = [
        recognise(device, adv, (Hearing(LOCAL, adv.rssi),), candidates)
        for device, adv in heard.values()
    ]
    return sort_found(found)


def recognise(
    device: BLEDevice,
    adv: AdvertisementData,
    sources: tuple[Hearing, ...],
    specs: Iterable[DeviceSpec] | None = None,
) -> Found:
    """What was heard of one device, and the spec it matches."""
    ad = advertisement(device, adv)
    hit: Match | None = match(ad, _specs(specs))
    return Found(
        address=device.address,
        name=ad.name,
        rssi=max(h.rssi for h in sources),
        spec=hit.spec.name if hit else None,
        match=hit.kind.value if hit else None,
        services=ad.services,
        manufacturer_data={k: v.hex() for k, v in ad.manufacturer_data.items()},
        device=device,
        sources=sources,
    )


def merge(*lists: Iterable[Found]) -> list[Found]:
    """One entry per address from several sources' scans, every source's hearing kept."""
    by_address: dict[str, Found] = {}
    for found in (f for found_list in lists for f in found_list):
        key = found.address.upper()
        seen = by_address.get(key)
        if seen is None:
            by_address[key] = found
            continue
        best, other = (found, seen) if found.rssi > seen.rssi else (seen, found)
        sources = tuple(sorted(best.sources + other.sources, key=lambda h: -h.rssi))
        by_address[key] = replace(best, sources=sources)
    return sort_found(by_address.values())


def sort_found(found: Iterable[Found]) -> list[Found]:
    """Recognised guns first, then by signal."""
    return sorted(found, key=lambda f: (f.spec is None, -f.rssi, f.address))


async def find_advertised(
    address_or_name: str, timeout: float
) -> tuple[BLEDevice, AdvertisementData]:
    """The device with this address (``AA:BB:...``, any case) or advertised name."""
    wanted = address_or_name.strip()
    by_address = bool(_ADDRESS.match(wanted))

    seen: list[AdvertisementData] = []

    def is_it(device: BLEDevice, adv: AdvertisementData) -> bool:
        hit = (
            device.address.upper() == wanted.upper()
            if by_address
            else wanted in (adv.local_name, device.name)
        )
        if hit:
            seen.append(adv)
        return hit

    try:
        device = await _shared_scan().find(is_it, timeout)
    except (BleakError, OSError) as exc:
        raise _unavailable(exc) from exc
    if device is not None and seen:
        return device, seen[-1]
    raise DeviceNotFoundError(
        f"no device {wanted!r} advertised within {timeout:g} s — is it switched on and near? "
        "`gunctl scan` lists what is advertising; a longer --scan-timeout gives it more time"
    )


Wanted = Callable[[BLEDevice, AdvertisementData], bool]


class _SharedScan:
    """One scanner for every search in progress on an event loop; it stops with the last."""

    def __init__(self) -> None:
        self._searches: dict[object, tuple[Wanted, asyncio.Future[BLEDevice]]] = {}
        self._scanner: BleakScanner | None = None
        self._turn = asyncio.Lock()  # the scanner starts and stops one call at a time

    async def find(self, wanted: Wanted, timeout: float) -> BLEDevice | None:
        """The first device ``wanted`` accepts within ``timeout``, or None."""
        key = object()
        found: asyncio.Future[BLEDevice] = asyncio.get_running_loop().create_future()
        self._searches[key] = (wanted, found)
        try:
            async with asyncio.timeout(timeout):
                async with self._turn:
                    if self._scanner is None:
                        scanner = BleakScanner(detection_callback=self._heard)
                        await scanner.start()
                        self._scanner = scanner
                return await found
        except TimeoutError:
            return None
        finally:
            del self._searches[key]
            await self._stop_if_unwanted()

    async def _stop_if_unwanted(self) -> None:
        async with self._turn:
            if not self._searches and self._scanner is not None:
                scanner, self._scanner = self._scanner, None
                await scanner.stop()

    def _heard(self, device: BLEDevice, adv: AdvertisementData) -> None:
        for wanted, found in list(self._searches.values()):
            if not found.done() and wanted(device, adv):
                found.set_result(device)


_SCANS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _SharedScan] = (
    weakref.WeakKeyDictionary()
)


def _shared_scan() -> _SharedScan:
    loop = asyncio.get_running_loop()
    scan = _SCANS.get(loop)
    if scan is None:
        scan = _SCANS[loop] = _SharedScan()
    return scan


async def find(address_or_name: str, timeout: float) -> BLEDevice:
    """The ``BLEDevice`` to connect to; raises DeviceNotFoundError."""
    device, _ = await find_advertised(address_or_name, timeout)
    return device


# Kept next to the scanner for callers who look for it here; defined with the link.
from gunctl.links.ble import open_ble_link  # noqa: E402

__all__ = [
    "BluetoothUnavailableError",
    "DeviceNotFoundError",
    "Found",
    "Hearing",
    "NoSpecError",
    "advertisement",
    "find",
    "find_advertised",
    "merge",
    "open_ble_link",
    "recognise",
    "scan",
]
