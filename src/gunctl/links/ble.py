"""The Bluetooth LE link, through bleak and bleak-retry-connector.

``BleakLink`` implements ``gunctl.links.base.Link`` for one device and one
firmware spec; the spec maps the link's roles to characteristic UUIDs.

- ``connect()`` first closes any connection BlueZ still holds for the address
  (a crashed earlier run leaves one), then connects with
  ``establish_connection``, which backs off and retries on BlueZ's transient
  errors. The command and telemetry characteristics must be there, or the
  link disconnects and raises ``ConnectError``: this is not that device. It
  then subscribes to telemetry, and to Battery Level where the device has it.
- One GATT request at a time: writes with response and reads queue on one
  lock, because a reply is matched to its request. A write without response
  has no reply to wait for and does not queue: a stop sent that way goes out
  even while a request is still waiting for its answer.
- A frame larger than the ATT payload (MTU - 3) is refused with ``LinkError``;
  frames are never split, because no firmware spec says how to reassemble them.
- ``open_ble_link`` finds a device by address or advertised name and picks its
  spec by matching the advertisement (see ``gunctl.links.scan``); the link
  keeps the signal strength it advertised with as ``rssi``.
- An unexpected disconnection (bleak's disconnected callback) ends every
  ``notifications()`` stream at once and ``wait_disconnected()`` returns
  ``lost``; after ``disconnect()`` it returns ``requested``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterable

from bleak import BleakClient
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData
from bleak.exc import BleakError
from bleak_retry_connector import (
    BleakAbortedError,
    BleakClientWithServiceCache,
    BleakNotFoundError,
    BleakOutOfConnectionSlotsError,
    close_stale_connections_by_address,
    establish_connection,
)

from gunctl.clock import Clock
from gunctl.errors import (
    ConnectAbortedError,
    DeviceNotFoundError,
    OutOfSlotsError,
    UnknownNameError,
)
from gunctl.links.base import (
    ConnectError,
    Endpoint,
    Lifetime,
    LinkError,
    LinkLostError,
    Notification,
    Receiver,
)
from gunctl.specs.models import DeviceSpec

# What bleak and the D-Bus underneath it raise when an operation or connection fails
_BLE_ERRORS = (BleakError, asyncio.TimeoutError, EOFError, BrokenPipeError, OSError)


_CONNECT_ERRORS: tuple[tuple[type[BaseException], type[ConnectError], str], ...] = (
    (BleakNotFoundError, DeviceNotFoundError, "switch the gun on and bring it nearer"),
    (
        BleakOutOfConnectionSlotsError,
        OutOfSlotsError,
        "disconnect another device from the adapter or proxy, or add a proxy",
    ),
    (BleakAbortedError, ConnectAbortedError, "try again; if it keeps failing, restart bluetooth"),
)


def connect_error(who: str, exc: BaseException) -> ConnectError:
    """bleak-retry-connector's failure as gunctl's: not found, out of slots and aborted stay apart.

    A person acts differently on each (switch the gun on, free a slot, try
    again), so each is its own class, with that advice.
    """
    for theirs, ours, advice in _CONNECT_ERRORS:
        if isinstance(exc, theirs):
            return ours(f"{who}: {exc}", advice)
    return ConnectError(f"{who}: {exc}")


class BleakLink:
    def __init__(
        self,
        ble_device: BLEDevice,
        spec: DeviceSpec,
        *,
        clock: Clock,
        max_attempts: int = 3,
        client_class: type[BleakClient] = BleakClientWithServiceCache,
        rssi: int | None = None,
    ) -> None:
        self.ble_device = ble_device
        self.spec = spec
        self.clock = clock
        self.max_attempts = max_attempts
        self.client_class = client_class
        self._client: BleakClient | None = None
        self._chars: dict[Endpoint, BleakGATTCharacteristic] = {}
        self._lock = asyncio.Lock()
        self._life = Lifetime()
        self._rssi = rssi

    @property
    def address(self) -> str:
        return self.ble_device.address

    @property
    def name(self) -> str:
        return self.ble_device.name or self.ble_device.address

    @property
    def connected(self) -> bool:
        return self._life.up and self._client is not None and self._client.is_connected

    @property
    def reason(self) -> str | None:
        """Why the last connection ended."""
        return self._life.reason

    @property
    def coalesced(self) -> int:
        return self._life.coalesced

    @property
    def in_process(self) -> bool:
        return False

    @property
    def rssi(self) -> int | None:
        """The signal strength (dBm) of the advertisement the device was found by, if known."""
        return self._rssi

    @property
    def mtu(self) -> int:
        """The ATT MTU, as BlueZ reports it on the command characteristic."""
        char = self._chars.get(Endpoint.COMMAND)
        return 23 if char is None else char.max_write_without_response_size + 3

    async def connect(self) -> None:
        if self.connected:
            return
        try:
            await close_stale_connections_by_address(self.address)
            client = await establish_connection(
                self.client_class,
                self.ble_device,
                self.name,
                disconnected_callback=self._on_disconnected,
                max_attempts=self.max_attempts,
            )
        except _BLE_ERRORS as exc:
            raise connect_error(f"{self.name} ({self.address})", exc) from exc
        try:
            self._chars = self._find_characteristics(client)
        except ConnectError:
            with contextlib.suppress(*_BLE_ERRORS):
                await client.disconnect()
            raise
        self._client = client
        self._life.open()
        try:
            for endpoint in (Endpoint.TELEMETRY, Endpoint.BATTERY):
                char = self._chars.get(endpoint)
                if char is not None and "notify" in char.properties:
                    await client.start_notify(char, self._receiver(endpoint))
        except _BLE_ERRORS as exc:
            await self.disconnect()
            raise ConnectError(f"{self.name}: could not subscribe to notifications: {exc}") from exc
        if not client.is_connected:  # lost while subscribing
            self._life.close("lost")
            raise ConnectError(f"{self.name}: the link went while subscribing")

    async def disconnect(self) -> None:
        client = self._client
        if not self._life.up or client is None:
            return
        self._life.close("requested")
        with contextlib.suppress(*_BLE_ERRORS):
            await client.disconnect()

    async def write(self, endpoint: Endpoint, data: bytes, *, with_response: bool) -> None:
        client = self._check()
        char = self._chars.get(endpoint)
        if char is None or not {"write", "write-without-response"} & set(char.properties):
            raise LinkError(f"{endpoint.value} is not writable on {self.spec.name}")
        limit = char.max_write_without_response_size
        if len(data) > limit:
            raise LinkError(
                f"a {len(data)}-byte frame does not fit the {limit}-byte ATT payload (MTU - 3)"
            )
        async with self._lock if with_response else contextlib.nullcontext():
            self._check()
            try:
                await client.write_gatt_char(char, data, response=with_response)
            except _BLE_ERRORS as exc:
                raise self._error("write", exc) from exc

    async def read(self, endpoint: Endpoint) -> bytes:
        client = self._check()
        char = self._chars.get(endpoint)
        if char is None or "read" not in char.properties:
            raise LinkError(f"{endpoint.value} is not readable on {self.spec.name}")
        async with self._lock:
            self._check()
            try:
                return bytes(await client.read_gatt_char(char))
            except _BLE_ERRORS as exc:
                raise self._error("read", exc) from exc

    def listen(self, receive: Receiver) -> Callable[[], None]:
        return self._life.listen(receive)

    def notifications(self) -> AsyncIterator[Notification]:
        return self._life.stream()

    async def wait_disconnected(self) -> str:
        return await self._life.wait_closed()

    # -- inside ----------------------------------------------------------------

    def _find_characteristics(self, client: BleakClient) -> dict[Endpoint, BleakGATTCharacteristic]:
        gatt = self.spec.gatt
        wanted = {Endpoint.COMMAND: gatt.command, Endpoint.TELEMETRY: gatt.telemetry}
        if gatt.battery is not None:
            wanted[Endpoint.BATTERY] = gatt.battery.characteristic
        found: dict[Endpoint, BleakGATTCharacteristic] = {}
        for endpoint, uuid in wanted.items():
            char = client.services.get_characteristic(uuid)
            if char is not None:
                found[endpoint] = char
            elif endpoint is not Endpoint.BATTERY:
                raise ConnectError(
                    f"{self.name} has no {endpoint.value} characteristic {uuid}: "
                    f"not a {self.spec.name} device"
                )
        return found

    def _receiver(self, endpoint: Endpoint) -> Callable[[BleakGATTCharacteristic, bytearray], None]:
        def receive(_: BleakGATTCharacteristic, data: bytearray) -> None:
            self._life.publish(Notification(endpoint, bytes(data), self.clock.now()))

        return receive

    def _on_disconnected(self, client: BleakClient) -> None:
        # bleak also calls this for a connection attempt that BlueZ aborted; only
        # the end of the link this object holds counts.
        if client is self._client and self._life.up:
            self._life.close("lost")

    def _check(self) -> BleakClient:
        if not self.connected or self._client is None:
            raise LinkLostError(f"{self.name} ({self.address}) is not connected")
        return self._client

    def _error(self, operation: str, exc: BaseException) -> LinkError:
        if not self.connected:
            return LinkLostError(f"{self.name}: the link went during a {operation}: {exc}")
        return LinkError(f"{self.name}: {operation} failed: {exc}")


async def open_ble_link(
    address_or_name: str,
    spec_name: str | None = None,
    *,
    clock: Clock,
    timeout: float = 10.0,
    specs: Iterable[DeviceSpec] | None = None,
) -> tuple[BleakLink, DeviceSpec]:
    """Find a gun, work out its spec (or take the one named), and return an unconnected link.

    Raises ``DeviceNotFoundError`` (a ``ConnectError``) when nothing with that
    address or name advertises within ``timeout``, ``NoSpecError`` when no spec
    recognises it, and ``UnknownNameError`` for an unknown ``spec_name``.
    """
    from gunctl.links.scan import find_advertised

    device, adv = await find_advertised(address_or_name, timeout)
    spec = pick_spec(device, adv, spec_name, specs)
    return BleakLink(device, spec, clock=clock, rssi=adv.rssi), spec


def pick_spec(
    device: BLEDevice,
    adv: AdvertisementData,
    spec_name: str | None = None,
    specs: Iterable[DeviceSpec] | None = None,
) -> DeviceSpec:
    """The spec named, or the one the advertisement matches; NoSpecError when none does."""
    from gunctl.errors import NoSpecError
    from gunctl.links.scan import advertisement
    from gunctl.specs.matching import match

    if specs is None:
        from gunctl.specs.loader import load_specs

        specs = load_specs().values()
    candidates = list(specs)
    if spec_name is not None:
        by_name = {s.name: s for s in candidates}
        if spec_name not in by_name:
            raise UnknownNameError(
                f"no firmware spec named {spec_name!r}", "`gunctl specs list` shows them"
            )
        return by_name[spec_name]
    hit = match(advertisement(device, adv), candidates)
    if hit is None:
        raise NoSpecError(
            f"{device.name or device.address} matches no firmware spec; "
            "name one, or record it with `gunctl probe`"
        )
    return hit.spec
