"""A fake ESPHome Bluetooth proxy: simulated guns behind the ESPHome native API.

``FakeProxy`` listens on TCP (loopback in tests) and answers what
``aioesphomeapi`` asks a Bluetooth proxy, in aioesphomeapi's own protobuf
messages: hello, device info (with the proxy's feature flags and Bluetooth
MAC), pings, the free-slot subscription, raw advertisements, and the GATT
requests of an active connection (connect, service list, read, write with and
without response, notify and its descriptor, disconnect). Plaintext by
default; with ``psk`` it speaks only the Noise transport (see ``wire``).

Each gun added is a ``SimDevice`` in the proxy's radio range, heard at its own
signal strength. The same device may be in range of several proxies at once,
with a different strength at each, as in a house; a device holds one link at a
time, so the second proxy to ask is refused as a real gun would refuse it.
While a proxy holds a gun's link it is the device's link: frames the firmware
sends become ``BluetoothGATTNotifyDataResponse`` to the API client that
connected it.

Advertisements go to one API client at a time, as on ESPHome: a second
client's subscription is ignored until the first one leaves.

Slots are counted as ESPHome counts them (``connection_slots``, 3 by default):
a connect with none free is answered with a failed connection at once, and
every change is sent to subscribers as ``BluetoothConnectionsFreeResponse``.
``occupy(n)`` stands for other clients (Home Assistant, another gunctl
node) holding slots.

Faults, as a proxy in a house shows them:

- ``drop(address)``: the radio link to one gun breaks; the client is told the
  device disconnected, the gun notices after its supervision timeout;
- ``move(address, rssi)``: a gun goes out of range (``None``) or comes back;
- ``silence()``: the proxy stops answering and stops relaying (a wedged
  board) while its Bluetooth links stay up;
- ``reboot(down_s)``: every API connection and every Bluetooth link vanish at
  once, the proxy is unreachable for ``down_s`` seconds, then listens again
  with nothing connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid as uuidlib
from dataclasses import dataclass, field

from aioesphomeapi import BluetoothProxyFeature, api_pb2
from aioesphomeapi.model import BluetoothProxySubscriptionFlag
from bleak.assigned_numbers import CHARACTERISTIC_PROPERTIES
from google.protobuf.message import Message

from gunctl.specs.models import DeviceSpec
from gunsim.device import LinkRefused, SimDevice
from gunsim.esphome.wire import Channel, NoiseChannel, PlainChannel, WireError
from gunsim.radio import (
    BATTERY,
    CCCD_UUID,
    COMMAND,
    TELEMETRY,
    Characteristic,
    advertised_name,
    gatt_table,
    manufacturer_data,
    random_mac,
)

API_PORT = 6053
API_VERSION = (1, 12)
ESPHOME_VERSION = "2025.11.0"
FEATURES = (
    BluetoothProxyFeature.PASSIVE_SCAN
    | BluetoothProxyFeature.ACTIVE_CONNECTIONS
    | BluetoothProxyFeature.REMOTE_CACHING
    | BluetoothProxyFeature.RAW_ADVERTISEMENTS
)
_PROPERTY_BITS: dict[str, int] = {name: bit for bit, name in CHARACTERISTIC_PROPERTIES.items()}
_CONNECT = {
    api_pb2.BLUETOOTH_DEVICE_REQUEST_TYPE_CONNECT_V3_WITH_CACHE,
    api_pb2.BLUETOOTH_DEVICE_REQUEST_TYPE_CONNECT_V3_WITHOUT_CACHE,
}
# ESP-IDF status codes the proxy passes on, as aioesphomeapi names them
ESP_GATT_NO_RESOURCES = 0x80  # no free connection slot
ESP_GATT_CONN_FAIL_ESTABLISH = 0x3E  # the gun did not accept the connection
ESP_GATT_CONN_TIMEOUT = 0x08  # the link to the gun broke
ESP_GATT_NOT_FOUND = 0x0A  # not a handle the gun has
ESP_GATT_WRITE_NOT_PERMIT = 0x03
ESP_GATT_READ_NOT_PERMIT = 0x02


def mac_to_int(mac: str) -> int:
    return int(mac.replace(":", ""), 16)


@dataclass
class ProxiedGun:
    """A simulated gun in the proxy's range; ``rssi`` None means out of range."""

    device: SimDevice
    address: str
    name: str
    rssi: int | None
    services: tuple[str, ...]
    manufacturer_data: dict[int, bytes]

    @property
    def spec(self) -> DeviceSpec:
        return self.device.spec

    def raw_advertisement(self, rng: random.Random) -> api_pb2.BluetoothLERawAdvertisement:
        assert self.rssi is not None
        first = int(self.address[:2], 16)
        return api_pb2.BluetoothLERawAdvertisement(
            address=mac_to_int(self.address),
            rssi=self.rssi + rng.randint(-2, 2),
            address_type=1 if first & 0xC0 == 0xC0 else 0,
            data=advertising_data(self.name, self.services, self.manufacturer_data),
        )


def advertising_data(name: str, services: tuple[str, ...], maker: dict[int, bytes]) -> bytes:
    """Advertising and scan-response AD structures, concatenated as ESPHome relays them."""
    out = bytearray(b"\x02\x01\x06")  # flags: LE general discoverable, no BR/EDR

    def put(kind: int, payload: bytes) -> None:
        out.extend((len(payload) + 1, kind))
        out.extend(payload)

    put(0x09, name.encode())  # complete local name
    short = [u for u in services if u.endswith("-0000-1000-8000-00805f9b34fb")]
    full = [u for u in services if u not in short]
    if short:
        put(0x03, b"".join(int(u[4:8], 16).to_bytes(2, "little") for u in short))
    if full:
        put(0x07, b"".join(uuidlib.UUID(u).bytes[::-1] for u in full))
    for company, data in maker.items():
        put(0xFF, company.to_bytes(2, "little") + data)
    return bytes(out)


def _uuid_words(uuid: str) -> list[int]:
    value = uuidlib.UUID(uuid).int
    return [value >> 64, value & 0xFFFFFFFFFFFFFFFF]


def _properties(char: Characteristic) -> int:
    bits = 0
    for flag in char.flags:
        bits |= _PROPERTY_BITS[flag]
    return bits


class BleConnection:
    """One gun's Bluetooth link held by the proxy for one API client (the device's link)."""

    def __init__(self, proxy: FakeProxy, session: ApiSession, gun: ProxiedGun) -> None:
        self.proxy = proxy
        self.session = session
        self.gun = gun
        self.address = mac_to_int(gun.address)
        self.chars = {c.value_handle: c for s in gatt_table(gun.spec) for c in s.characteristics}
        self.cccds = {c.cccd_handle: c for c in self.chars.values() if c.cccd_handle}
        self.notifying: set[int] = set()  # value handles with notifications on
        self.mtu = 247

    def handle_of(self, role: str) -> int:
        return next(h for h, c in self.chars.items() if c.role == role)

    # -- the device's link ---------------------------------------------------

    def deliver(self, data: bytes) -> None:
        handle = self.handle_of(TELEMETRY)
        if handle in self.notifying:
            self.proxy.notified += 1
            self.session.send(
                api_pb2.BluetoothGATTNotifyDataResponse(
                    address=self.address, handle=handle, data=bytes(data)
                )
            )

    def lost(self, reason: str) -> None:
        """The gun ended the link."""
        self.proxy.end(self, error=ESP_GATT_CONN_TIMEOUT, device_reason=None)


class ApiSession:
    """One API client connected to the proxy."""

    def __init__(self, proxy: FakeProxy, channel: Channel, writer: asyncio.StreamWriter) -> None:
        self.proxy = proxy
        self.channel = channel
        self.writer = writer
        self.wants_free_slots = False
        self.advertising: asyncio.Task[None] | None = None

    def send(self, message: Message) -> None:
        if self.proxy.silent or self.writer.is_closing():
            return
        self.channel.send(message)

    def close(self, *, abort: bool) -> None:
        if self.advertising is not None:
            self.advertising.cancel()
            self.advertising = None
        if abort:
            self.writer.transport.abort()
        else:
            self.writer.close()


@dataclass
class ProxyCounters:
    """What crossed the proxy, for tests."""

    api_connections: int = 0
    connect_requests: int = 0
    refused_no_slot: int = 0
    writes_with_response: int = 0
    writes_without_response: int = 0
    reads: int = 0
    rejected_frames: int = 0  # connections closed for talking something else than the API
    messages: dict[str, int] = field(default_factory=dict)


class FakeProxy:
    """An ESPHome Bluetooth proxy on ``host``:``port`` with simulated guns in range.

    ESPHome proxies all listen on port 6053 and bleak-esphome always dials it,
    so fakes side by side differ by loopback address, not by port.
    """

    def __init__(
        self,
        name: str = "gunsim-proxy",
        *,
        host: str | None = None,
        port: int = API_PORT,
        psk: str | None = None,
        slots: int = 3,
        mac: str | None = None,
        seed: int = 0,
        advertise_period_s: float = 0.1,
    ) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.psk = psk
        self.slots = slots
        self.rng = random.Random(f"gunsim.esphome/{name}/{seed}")
        self.mac = mac or random_mac(0, self.rng)
        self.advertise_period_s = advertise_period_s
        self.guns: dict[str, ProxiedGun] = {}
        self.links: dict[str, BleConnection] = {}  # by gun address
        self.sessions: set[ApiSession] = set()
        self.counters = ProxyCounters()
        self.notified = 0
        self.silent = False
        self.busy = 0  # slots held by other clients (Home Assistant, another gunctl)
        self._server: asyncio.Server | None = None
        self._restart: asyncio.Task[None] | None = None

    # -- set-up --------------------------------------------------------------

    def add(
        self,
        device: SimDevice,
        *,
        address: str | None = None,
        name: str | None = None,
        rssi: int | None = -60,
        advertise_services: bool = True,
        advertise_manufacturer_data: bool = True,
    ) -> ProxiedGun:
        """Put ``device`` in range; the same device may be added to several proxies."""
        address = (
            address or _address_of(device) or random_mac(len(self.guns) + 1, self.rng)
        ).upper()
        spec = device.spec
        gun = ProxiedGun(
            device=device,
            address=address,
            name=name or advertised_name(spec, address),
            rssi=rssi,
            services=(spec.gatt.service,) if advertise_services else (),
            manufacturer_data=manufacturer_data(spec, address)
            if advertise_manufacturer_data
            else {},
        )
        self.guns[address] = gun
        return gun

    async def start(self) -> None:
        """Listen; with no host given, on a loopback address of its own (127.x.y.z)."""
        if self.host is not None:
            self._server = await asyncio.start_server(self._serve, self.host, self.port)
            return
        pick = random.SystemRandom()  # not seeded: test runs side by side must not collide
        for _ in range(50):
            host = f"127.{pick.randrange(1, 255)}.{pick.randrange(256)}.{pick.randrange(1, 255)}"
            try:
                self._server = await asyncio.start_server(self._serve, host, self.port)
            except OSError:
                continue
            self.host = host
            return
        raise OSError(f"no free loopback address for port {self.port}")

    async def aclose(self) -> None:
        """Switch the proxy off: every link and API connection ends."""
        if self._restart is not None:
            self._restart.cancel()
            self._restart = None
        await self._power_off(device_reason="requested", abort=False)

    async def __aenter__(self) -> FakeProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    @property
    def address(self) -> str:
        """Where gunctl finds it: the host (the API port is ESPHome's default)."""
        if self.host is None:
            raise RuntimeError("the proxy has not started")
        return self.host

    @property
    def free(self) -> int:
        return max(0, self.slots - len(self.links) - self.busy)

    def occupy(self, count: int) -> None:
        """Other clients hold ``count`` slots (0 frees them again)."""
        self.busy = count
        self._slots_changed()

    # -- faults --------------------------------------------------------------

    def drop(self, address: str, *, device_notices_after: float | None = 0.0) -> None:
        """The radio link to one gun breaks (the gun notices after its supervision timeout)."""
        link = self.links.get(address.upper())
        if link is None:
            return
        self.end(link, error=ESP_GATT_CONN_TIMEOUT, device_reason=None)
        device = link.gun.device
        if device_notices_after == 0.0:
            device.detach(link, "timeout")
        elif device_notices_after is not None:
            asyncio.get_running_loop().call_later(
                device_notices_after, device.detach, link, "timeout"
            )

    def move(self, address: str, rssi: int | None) -> None:
        """The gun is now heard at ``rssi`` dBm, or not at all (None)."""
        self.guns[address.upper()].rssi = rssi

    def silence(self, silent: bool = True) -> None:
        """Stop (or resume) answering and relaying; Bluetooth links stay up meanwhile."""
        self.silent = silent

    def reboot(self, down_s: float = 1.0) -> None:
        """Power-cycle: everything drops at once; the proxy listens again after ``down_s``."""

        async def cycle() -> None:
            await self._power_off(device_reason="timeout", abort=True)
            await asyncio.sleep(down_s)
            self.silent = False
            await self.start()

        self._restart = asyncio.get_running_loop().create_task(cycle())

    # -- the API -------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            channel: Channel
            if self.psk is None:
                channel = PlainChannel(reader, writer)
            else:
                channel = await NoiseChannel.accept(
                    reader,
                    writer,
                    psk=self.psk,
                    name=self.name,
                    mac=self.mac.replace(":", "").lower(),
                )
        except (WireError, asyncio.IncompleteReadError, ConnectionError):
            self.counters.rejected_frames += 1
            writer.close()
            return
        session = ApiSession(self, channel, writer)
        self.sessions.add(session)
        self.counters.api_connections += 1
        try:
            while True:
                message = await channel.receive()
                if message is None or self.silent:
                    continue
                name = type(message).__name__
                self.counters.messages[name] = self.counters.messages.get(name, 0) + 1
                if not self._answer(session, message):
                    break
                await writer.drain()
        except WireError:
            self.counters.rejected_frames += 1
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._session_ended(session)

    def _answer(self, session: ApiSession, message: Message) -> bool:
        """Handle one request; False when the client said goodbye."""
        match message:
            case api_pb2.HelloRequest():
                session.send(
                    api_pb2.HelloResponse(
                        api_version_major=API_VERSION[0],
                        api_version_minor=API_VERSION[1],
                        server_info=f"{self.name} (ESPHome v{ESPHOME_VERSION})",
                        name=self.name,
                    )
                )
            case api_pb2.DeviceInfoRequest():
                session.send(self._device_info())
            case api_pb2.PingRequest():
                session.send(api_pb2.PingResponse())
            case api_pb2.DisconnectRequest():
                session.send(api_pb2.DisconnectResponse())
                return False
            case api_pb2.ListEntitiesRequest():
                session.send(api_pb2.ListEntitiesDoneResponse())
            case api_pb2.SubscribeBluetoothConnectionsFreeRequest():
                session.wants_free_slots = True
                session.send(self._free_slots())
            case api_pb2.SubscribeBluetoothLEAdvertisementsRequest(flags=flags):
                # ESPHome relays advertisements to one API client at a time and ignores
                # a second subscriber without a word.
                taken = any(other.advertising for other in self.sessions if other is not session)
                raw = flags & BluetoothProxySubscriptionFlag.RAW_ADVERTISEMENTS
                if raw and not taken and not session.advertising:
                    session.advertising = asyncio.get_running_loop().create_task(
                        self._advertise(session)
                    )
            case api_pb2.UnsubscribeBluetoothLEAdvertisementsRequest():
                if session.advertising is not None:
                    session.advertising.cancel()
                    session.advertising = None
            case api_pb2.BluetoothDeviceRequest():
                self._device_request(session, message)
            case _:
                self._gatt_request(session, message)
        return True

    def _device_info(self) -> api_pb2.DeviceInfoResponse:
        return api_pb2.DeviceInfoResponse(
            name=self.name,
            friendly_name=self.name,
            mac_address=self.mac,
            bluetooth_mac_address=self.mac,
            esphome_version=ESPHOME_VERSION,
            model="esp32dev",
            manufacturer="Espressif",
            bluetooth_proxy_feature_flags=int(FEATURES),
            api_encryption_supported=self.psk is not None,
        )

    def _free_slots(self) -> api_pb2.BluetoothConnectionsFreeResponse:
        return api_pb2.BluetoothConnectionsFreeResponse(
            free=self.free,
            limit=self.slots,
            allocated=[link.address for link in self.links.values()]
            + [0xF00000000000 + n for n in range(self.busy)],
        )

    def _slots_changed(self) -> None:
        for session in self.sessions:
            if session.wants_free_slots:
                session.send(self._free_slots())

    async def _advertise(self, session: ApiSession) -> None:
        while True:
            heard = [
                gun.raw_advertisement(self.rng)
                for gun in self.guns.values()
                if gun.rssi is not None and not gun.device.connected and gun.device.powered
            ]
            if heard:
                session.send(api_pb2.BluetoothLERawAdvertisementsResponse(advertisements=heard))
            await asyncio.sleep(self.advertise_period_s)

    def _connection_state(
        self, session: ApiSession, address: int, *, connected: bool, error: int = 0, mtu: int = 0
    ) -> None:
        session.send(
            api_pb2.BluetoothDeviceConnectionResponse(
                address=address, connected=connected, mtu=mtu, error=error
            )
        )

    def _device_request(self, session: ApiSession, request: api_pb2.BluetoothDeviceRequest) -> None:
        address = request.address
        mac = ":".join(f"{b:02X}" for b in address.to_bytes(6, "big"))
        kind = request.request_type
        if kind in _CONNECT:
            self._connect(session, mac, address)
        elif kind == api_pb2.BLUETOOTH_DEVICE_REQUEST_TYPE_DISCONNECT:
            link = self.links.get(mac)
            if link is not None and link.session is session:
                self.end(link, error=0, device_reason="requested")
            else:
                self._connection_state(session, address, connected=False)
        elif kind == api_pb2.BLUETOOTH_DEVICE_REQUEST_TYPE_CLEAR_CACHE:
            session.send(api_pb2.BluetoothDeviceClearCacheResponse(address=address, success=True))

    def _connect(self, session: ApiSession, mac: str, address: int) -> None:
        self.counters.connect_requests += 1
        link = self.links.get(mac)
        if link is not None and link.session is session:
            self._connection_state(session, address, connected=True, mtu=link.mtu)
            return
        gun = self.guns.get(mac)
        if self.free <= 0:
            self.counters.refused_no_slot += 1
            self._connection_state(session, address, connected=False, error=ESP_GATT_NO_RESOURCES)
            return
        if gun is None or gun.rssi is None:
            self._connection_state(
                session, address, connected=False, error=ESP_GATT_CONN_FAIL_ESTABLISH
            )
            return
        link = BleConnection(self, session, gun)
        try:
            gun.device.attach(link)
        except LinkRefused:
            self._connection_state(
                session, address, connected=False, error=ESP_GATT_CONN_FAIL_ESTABLISH
            )
            return
        self.links[mac] = link
        self._connection_state(session, address, connected=True, mtu=link.mtu)
        self._slots_changed()

    def end(self, link: BleConnection, *, error: int, device_reason: str | None) -> None:
        """A link is over: tell its client and the subscribers, free the slot."""
        if self.links.get(link.gun.address) is not link:
            return
        del self.links[link.gun.address]
        if device_reason is not None:
            link.gun.device.detach(link, device_reason)
        self._connection_state(link.session, link.address, connected=False, error=error)
        self._slots_changed()

    def _gatt_request(self, session: ApiSession, message: Message) -> None:
        address: int | None = getattr(message, "address", None)
        handle: int = getattr(message, "handle", 0)
        if address is None:
            return  # a request this proxy has nothing to say to (states, services, time)
        mac = ":".join(f"{b:02X}" for b in int(address).to_bytes(6, "big"))
        link = self.links.get(mac)
        if link is None or link.session is not session:
            self._connection_state(session, address, connected=False)
            return
        match message:
            case api_pb2.BluetoothGATTGetServicesRequest():
                session.send(
                    api_pb2.BluetoothGATTGetServicesResponse(
                        address=address, services=_services(link.gun.spec)
                    )
                )
                session.send(api_pb2.BluetoothGATTGetServicesDoneResponse(address=address))
            case api_pb2.BluetoothGATTWriteRequest():
                self._write(link, message)
            case api_pb2.BluetoothGATTReadRequest():
                self._read(link, message)
            case api_pb2.BluetoothGATTNotifyRequest(enable=enable):
                if handle not in link.chars or "notify" not in link.chars[handle].flags:
                    self._gatt_error(link, handle, ESP_GATT_NOT_FOUND)
                    return
                (link.notifying.add if enable else link.notifying.discard)(handle)
                session.send(api_pb2.BluetoothGATTNotifyResponse(address=address, handle=handle))
            case api_pb2.BluetoothGATTWriteDescriptorRequest():
                if handle not in link.cccds:
                    self._gatt_error(link, handle, ESP_GATT_NOT_FOUND)
                    return
                session.send(api_pb2.BluetoothGATTWriteResponse(address=address, handle=handle))
            case _:
                self._gatt_error(link, handle, ESP_GATT_NOT_FOUND)

    def _gatt_error(self, link: BleConnection, handle: int, error: int) -> None:
        link.session.send(
            api_pb2.BluetoothGATTErrorResponse(address=link.address, handle=handle, error=error)
        )

    def _write(self, link: BleConnection, request: api_pb2.BluetoothGATTWriteRequest) -> None:
        char = link.chars.get(request.handle)
        if char is None or char.role != COMMAND:
            self._gatt_error(link, request.handle, ESP_GATT_WRITE_NOT_PERMIT)
            return
        if request.response:
            self.counters.writes_with_response += 1
        else:
            self.counters.writes_without_response += 1
        device = link.gun.device
        device.receive(bytes(request.data))
        if not request.response:
            return
        reply = api_pb2.BluetoothGATTWriteResponse(address=link.address, handle=request.handle)
        delay = device.ack_delay_s()
        if delay > 0:  # the gun's slow-acknowledgement fault
            asyncio.get_running_loop().call_later(delay, self._reply_if_up, link, reply)
        else:
            link.session.send(reply)

    def _reply_if_up(self, link: BleConnection, reply: Message) -> None:
        if self.links.get(link.gun.address) is link:
            link.session.send(reply)

    def _read(self, link: BleConnection, request: api_pb2.BluetoothGATTReadRequest) -> None:
        char = link.chars.get(request.handle)
        if char is None or char.role != BATTERY:
            self._gatt_error(link, request.handle, ESP_GATT_READ_NOT_PERMIT)
            return
        self.counters.reads += 1
        link.session.send(
            api_pb2.BluetoothGATTReadResponse(
                address=link.address, handle=request.handle, data=link.gun.device.read_battery()
            )
        )

    def _session_ended(self, session: ApiSession) -> None:
        """The API client went: ESPHome lets go of every Bluetooth link it held."""
        self.sessions.discard(session)
        session.close(abort=False)
        for link in [link for link in self.links.values() if link.session is session]:
            del self.links[link.gun.address]
            link.gun.device.detach(link, "requested")
        self._slots_changed()

    async def _power_off(self, *, device_reason: str, abort: bool) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for link in list(self.links.values()):
            link.gun.device.detach(link, device_reason)
        self.links.clear()
        for session in list(self.sessions):
            session.close(abort=abort)
        self.sessions.clear()
        if server is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)


def _services(spec: DeviceSpec) -> list[api_pb2.BluetoothGATTService]:
    return [
        api_pb2.BluetoothGATTService(
            uuid=_uuid_words(service.uuid),
            handle=service.handle,
            characteristics=[
                api_pb2.BluetoothGATTCharacteristic(
                    uuid=_uuid_words(c.uuid),
                    handle=c.value_handle,
                    properties=_properties(c),
                    descriptors=[]
                    if c.cccd_handle is None
                    else [
                        api_pb2.BluetoothGATTDescriptor(
                            uuid=_uuid_words(CCCD_UUID),
                            handle=c.cccd_handle,
                        )
                    ],
                )
                for c in service.characteristics
            ],
        )
        for service in gatt_table(spec)
    ]


def _address_of(device: SimDevice) -> str | None:
    """The device's own address when it looks like a Bluetooth one."""
    parts = device.address.split(":")
    return device.address if len(parts) == 6 and all(len(p) == 2 for p in parts) else None
