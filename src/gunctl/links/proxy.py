"""Guns through ESPHome Bluetooth proxies, with bleak-esphome and habluetooth unmodified.

An ESPHome Bluetooth proxy is an ESP32 board somewhere in the house that relays
Bluetooth LE over the network: it reports the advertisements it hears and holds
a few connections (3 by default) on behalf of a host. ``bleak-esphome`` turns
each proxy into a scanner and a bleak backend for ``habluetooth``'s manager,
and habluetooth's ``BleakClient`` routes a connection to the proxy that hears
the gun best and has a free slot. gunctl adds nothing to that engine; it
starts it and reads it:

- ``Proxies`` sets up the manager and one API connection per configured proxy
  (``ProxyConfig``: address and optional encryption key). aioesphomeapi keeps
  each connection up, reconnecting after a proxy reboots.
- ``heard()`` merges what every proxy hears: per gun, which proxy heard it and
  how well; ``states()`` says each proxy's slots.
- ``open_link()`` finds a gun and returns an unconnected ``ProxiedLink``: an
  ordinary ``BleakLink`` whose bleak client is habluetooth's. A gun that is
  heard only by proxies with no free slot is refused at once with
  ``OutOfSlotsError`` naming them, rather than waiting out a timeout.

When a proxy reboots or drops off the network, bleak-esphome ends every
connection it held, so the link reports ``lost`` as any Bluetooth link does
and the Supervisor's lost-link stop applies unchanged; a write that meets the
reset connection first counts as the same loss. A proxy that stops answering
(a wedged board keeps its TCP connection) is given up after ``ANSWER_S``
rather than aioesphomeapi's 30 s, so no caller waits on it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aioesphomeapi.core import (
    BluetoothConnectionDroppedError,
    ConnectionNotEstablishedAPIError,
    PingFailedAPIError,
    ReadFailedAPIError,
    SocketAPIError,
)
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak_esphome import APIConnectionManager
from bleak_esphome.backend.client import ESPHomeClientData
from habluetooth import (
    BaseHaScanner,
    BluetoothManager,
    BluetoothServiceInfoBleak,
    HaBleakClientWrapper,
    set_manager,
)

from gunctl.clock import Clock
from gunctl.errors import OutOfSlotsError, ProxyError
from gunctl.links.base import Endpoint, LinkError, LinkLostError
from gunctl.links.ble import BleakLink, pick_spec
from gunctl.links.proxy_config import ProxyConfig
from gunctl.links.scan import Found, Hearing, recognise, sort_found
from gunctl.specs.models import DeviceSpec

_ADDRESS = re.compile(r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")
POLL_S = 0.1  # how often a search looks again at what the proxies have heard
SETTLE_S = 1.0  # how long the other proxies get to hear a gun that one proxy has heard
ANSWER_S = 1.0  # a GATT operation through a proxy unanswered this long gives the link up
# habluetooth's BleakClient: connects through whichever proxy hears the device best and has a
# free slot
PROXY_CLIENT = HaBleakClientWrapper


@dataclass(frozen=True)
class ProxyState:
    name: str  # the proxy's ESPHome name and Bluetooth MAC, or its address while unreachable
    address: str | None  # as configured, when known
    reachable: bool
    slots: int | None = None
    free: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "address": self.address,
            "reachable": self.reachable,
            "slots": self.slots,
            "free": self.free,
        }


@dataclass(frozen=True)
class Heard:
    """A device as all proxies together hear it; ``sources`` strongest first."""

    device: BLEDevice
    advertisement: AdvertisementData
    sources: tuple[Hearing, ...]

    @property
    def rssi(self) -> int:
        return self.sources[0].rssi


class _Manager(BluetoothManager):
    """habluetooth's manager for a program that asks it what it heard, rather than being told."""

    def _discover_service_info(self, service_info: BluetoothServiceInfoBleak) -> None:
        pass


class Proxies:
    """The proxies gunctl reaches guns through, for as long as the ``async with`` lasts.

    habluetooth keeps one manager per process; a ``Proxies`` owns it while open,
    so only one is open at a time.
    """

    def __init__(self, configs: Sequence[ProxyConfig], *, start_timeout: float = 5.0) -> None:
        if not configs:
            raise ProxyError("no proxies configured")
        self.configs = list(configs)
        self.start_timeout = start_timeout
        self._manager: _Manager | None = None
        self._connections: list[APIConnectionManager] = []
        self._starting: list[asyncio.Task[None]] = []

    async def __aenter__(self) -> Proxies:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def start(self) -> None:
        """Connect to every proxy, waiting up to ``start_timeout`` for them all.

        A proxy that does not answer in time is not an error here: aioesphomeapi
        keeps trying, and ``states()`` shows it unreachable until it answers.
        """
        # Set up, habluetooth puts its own classes under bleak's BleakClient and
        # BleakScanner names. gunctl's links took bleak's classes when they were
        # imported (this module imports them first), so the local adapter's
        # searches and connections stay on BlueZ beside the proxies.
        manager = _Manager()
        set_manager(manager)
        await manager.async_setup()
        self._manager = manager
        for config in self.configs:
            key = config.key.get_secret_value() if config.key is not None else None
            connection = APIConnectionManager({"address": config.address, "noise_psk": key})
            self._connections.append(connection)
            self._starting.append(asyncio.create_task(connection.start(), name=config.address))
        await asyncio.wait(self._starting, timeout=self.start_timeout)

    async def aclose(self) -> None:
        for task in self._starting:
            task.cancel()
        await asyncio.gather(*self._starting, return_exceptions=True)
        await asyncio.gather(*(c.stop() for c in self._connections), return_exceptions=True)
        if self._manager is not None:
            self._manager.async_stop()
            self._manager = None

    # -- what the proxies hear -------------------------------------------------------

    @property
    def manager(self) -> BluetoothManager:
        if self._manager is None:
            raise ProxyError("the proxies are not started")
        return self._manager

    def scanners(self) -> list[BaseHaScanner]:
        """The proxies that are connected now, as habluetooth's scanners."""
        if self._manager is None:
            return []
        return [s for s in self._manager.async_current_scanners() if s.connectable]

    def states(self) -> list[ProxyState]:
        """Every configured proxy: its slots when reachable."""
        states = []
        for scanner in self.scanners():
            allocations = scanner.get_allocations()
            states.append(
                ProxyState(
                    name=scanner.name,
                    address=_dialled(scanner),
                    reachable=True,
                    slots=allocations.slots if allocations else None,
                    free=allocations.free if allocations else None,
                )
            )
        seen = {s.address for s in states}
        states += [
            ProxyState(name=c.address, address=c.address, reachable=False)
            for c in self.configs
            if c.address not in seen
        ]
        return states

    def heard(self) -> list[Heard]:
        """Every device some proxy hears, with each proxy's signal; strongest first."""
        manager = self.manager
        found = []
        for device in manager.async_discovered_devices(True):
            heard = self.hearing(device.address)
            if heard is not None:
                found.append(heard)
        return sorted(found, key=lambda h: -h.rssi)

    def found(self, specs: Iterable[DeviceSpec] | None = None) -> list[Found]:
        """``heard()`` as a scan reports it: each device with the spec it matches."""
        return sort_found(
            recognise(h.device, h.advertisement, h.sources, specs) for h in self.heard()
        )

    def hearing(self, address: str) -> Heard | None:
        """How the proxies hear one address now; None when none does."""
        paths = sorted(
            self.manager.async_scanner_devices_by_address(address, True),
            key=lambda p: -p.advertisement.rssi,
        )
        if not paths:
            return None
        hearings = []
        for path in paths:
            allocations = path.scanner.get_allocations()
            free = allocations.free if allocations else None
            hearings.append(Hearing(path.scanner.name, path.advertisement.rssi, free))
        best = paths[0]
        return Heard(best.ble_device, best.advertisement, tuple(hearings))

    async def find(self, address_or_name: str, timeout: float) -> Heard:
        """The gun with this address or advertised name, once the proxies have heard it.

        Once one proxy hears it, the others get up to ``SETTLE_S`` to hear it
        too, so that the choice of proxy is made on every proxy's signal.
        """
        from gunctl.errors import DeviceNotFoundError

        wanted = address_or_name.strip()
        by_address = bool(_ADDRESS.match(wanted))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        first_heard: float | None = None
        while True:
            now = loop.time()
            heard = next((h for h in self.heard() if _is(h, wanted, by_address)), None)
            if heard is not None:
                first_heard = now if first_heard is None else first_heard
                reachable = sum(1 for s in self.states() if s.reachable)
                if len(heard.sources) >= reachable or now - first_heard >= SETTLE_S:
                    return heard
            elif now >= deadline:
                raise DeviceNotFoundError(
                    f"no device {wanted!r} heard within {timeout:g} s by {self._describe()}"
                )
            await asyncio.sleep(POLL_S)

    def _describe(self) -> str:
        states = self.states()
        up = [s.name for s in states if s.reachable]
        down = [s.name for s in states if not s.reachable]
        text = f"proxies {', '.join(up)}" if up else "any proxy"
        return text + (f" (unreachable: {', '.join(down)})" if down else "")

    async def open_link(
        self,
        address_or_name: str,
        spec_name: str | None = None,
        *,
        clock: Clock,
        timeout: float = 10.0,
        specs: Iterable[DeviceSpec] | None = None,
    ) -> tuple[ProxiedLink, DeviceSpec]:
        """Find a gun through the proxies and work out its spec; the link is not connected."""
        heard = await self.find(address_or_name, timeout)
        spec = pick_spec(heard.device, heard.advertisement, spec_name, specs)
        return ProxiedLink(self, heard.device, spec, clock=clock, rssi=heard.rssi), spec

    async def open_best_link(
        self,
        address_or_name: str,
        spec_name: str | None = None,
        *,
        clock: Clock,
        timeout: float = 10.0,
    ) -> tuple[BleakLink, DeviceSpec]:
        """Through the local adapter or a proxy, whichever hears the gun better.

        Both listen at once. Once the proxies have found the gun, the local
        adapter gets ``SETTLE_S`` more to hear it too; a machine with no adapter
        (or no BlueZ) simply has no say.
        """
        from gunctl.errors import DeviceNotFoundError
        from gunctl.links.ble import open_ble_link

        local = asyncio.create_task(
            open_ble_link(address_or_name, spec_name, clock=clock, timeout=timeout)
        )
        try:
            proxied: tuple[ProxiedLink, DeviceSpec] | None = await self.open_link(
                address_or_name, spec_name, clock=clock, timeout=timeout
            )
        except DeviceNotFoundError:
            proxied = None
        except BaseException:
            local.cancel()
            raise
        await asyncio.wait([local], timeout=SETTLE_S if proxied is not None else None)
        if not local.done():
            local.cancel()
            await asyncio.wait([local])
        here = _found_here(local)
        if here is None and proxied is None:
            raise DeviceNotFoundError(
                f"no device {address_or_name.strip()!r} heard within {timeout:g} s "
                f"by the local adapter or {self._describe()}"
            )
        if proxied is None or (
            here is not None and (here[0].rssi or -999) > (proxied[0].rssi or -999)
        ):
            assert here is not None
            return here
        return proxied


def _dialled(scanner: BaseHaScanner) -> str | None:
    """The address a bleak-esphome scanner's API client dials, as it was configured."""
    connector = scanner.connector
    factory = connector.client if connector is not None else None
    if isinstance(factory, functools.partial):
        data = factory.keywords.get("client_data")
        if isinstance(data, ESPHomeClientData):
            return str(data.client.address)
    return None


def _found_here(
    search: asyncio.Task[tuple[BleakLink, DeviceSpec]],
) -> tuple[BleakLink, DeviceSpec] | None:
    """What the local adapter's search found; None when it heard nothing or has no adapter."""
    if search.cancelled():
        return None
    error = search.exception()
    if isinstance(error, LinkError):
        return None
    if error is not None:
        raise error
    return search.result()


def _is(heard: Heard, wanted: str, by_address: bool) -> bool:
    if by_address:
        return bool(heard.device.address.upper() == wanted.upper())
    return wanted in (heard.advertisement.local_name, heard.device.name)


class ProxiedLink(BleakLink):
    """A BleakLink whose bleak client is habluetooth's, so it connects through a proxy."""

    def __init__(
        self, proxies: Proxies, ble_device: BLEDevice, spec: DeviceSpec, *, clock: Clock, rssi: int
    ) -> None:
        super().__init__(ble_device, spec, clock=clock, client_class=PROXY_CLIENT, rssi=rssi)
        self.proxies = proxies
        self._letting_go: asyncio.Task[None] | None = None

    @property
    def source(self) -> str | None:
        """The proxy holding the connection, while connected."""
        for scanner in self.proxies.scanners():
            allocations = scanner.get_allocations()
            if allocations and self.address.upper() in allocations.allocated:
                return str(scanner.name)
        return None

    async def connect(self) -> None:
        heard = self.proxies.hearing(self.address)
        if heard is not None and all(h.free == 0 for h in heard.sources):
            names = ", ".join(f"{h.source} (no free slot)" for h in heard.sources)
            raise OutOfSlotsError(
                f"{self.name} ({self.address}) is heard only by proxies with every "
                f"connection slot in use: {names}; disconnect another device from one of "
                "them, or raise its connection_slots"
            )
        await super().connect()

    async def write(self, endpoint: Endpoint, data: bytes, *, with_response: bool) -> None:
        async with self._answered("write"):
            await super().write(endpoint, data, with_response=with_response)

    async def read(self, endpoint: Endpoint) -> bytes:
        async with self._answered("read"):
            return await super().read(endpoint)

    @contextlib.asynccontextmanager
    async def _answered(self, operation: str) -> AsyncIterator[None]:
        """A proxy that does not answer within ``ANSWER_S`` is given up, as a lost link.

        A wedged proxy keeps its TCP connection open and answers nothing, and
        aioesphomeapi would wait 30 s for the reply; the caller (the
        Supervisor's tick) must not wait with it.
        """
        try:
            async with asyncio.timeout(ANSWER_S):
                yield
        except TimeoutError:
            if self.connected:
                self._life.close("lost")
                self._letting_go = asyncio.create_task(self._let_go())
            raise LinkLostError(
                f"{self.name}: the proxy did not answer a {operation} within {ANSWER_S:g} s"
            ) from None

    async def _let_go(self) -> None:
        """Ask the proxy to drop the given-up connection, so that its slot frees if it recovers."""
        client = self._client
        if client is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(ANSWER_S):
                    await client.disconnect()

    def _error(self, operation: str, exc: BaseException) -> LinkError:
        # A write can meet the proxy's connection reset before bleak-esphome has
        # told bleak that the device went: it is the same loss of the link.
        if _proxy_gone(exc) and self.connected:
            self._life.close("lost")
        return super()._error(operation, exc)


# What aioesphomeapi raises when the API connection to the proxy, and so every
# Bluetooth link it held, is gone
_GONE = (
    ConnectionError,
    SocketAPIError,
    ConnectionNotEstablishedAPIError,
    PingFailedAPIError,
    ReadFailedAPIError,  # a reply awaited when the connection was reset
    BluetoothConnectionDroppedError,
)


def _proxy_gone(exc: BaseException | None) -> bool:
    """Whether ``exc``, or anything it was raised from, says the proxy is gone."""
    while exc is not None:
        if isinstance(exc, _GONE):
            return True
        exc = exc.__cause__
    return False
