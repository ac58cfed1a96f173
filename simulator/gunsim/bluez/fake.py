"""A fake BlueZ: simulated guns as BLE peripherals on a (private) D-Bus.

``FakeBluez`` owns the name ``org.bluez`` on the bus it is given and exports one
adapter (``/org/bluez/hci0``). Each ``SimDevice`` added becomes a ``Peripheral``:
a Device1 object that advertises the spec's name, service and manufacturer
data, and, while connected, the GATT objects BlueZ would have resolved: the
spec's service with its command and telemetry characteristics, and the standard
Battery Service where the spec has one. Object paths follow BlueZ exactly
(``<device>/serviceXXXX/charYYYY/descZZZZ``) because bleak parses them.

What crosses the radio:

- ``Connect`` attaches the peripheral to the device as its link, exports the
  GATT objects, then sets ``Connected`` and ``ServicesResolved``;
- ``WriteValue`` on the command characteristic is ``SimDevice.receive``; the
  write type (``request``/``command``) must be one the characteristic allows,
  and a value longer than MTU - 3 is refused as BlueZ does;
- every frame the device sends is a ``PropertiesChanged(Value)`` on the
  telemetry characteristic while notifications are on;
- ``ReadValue`` on Battery Level (0x2A19) reads the device's battery;
- ``Disconnect`` detaches the link (the firmware sees the host leave).

Discovery is kept per D-Bus client, as BlueZ keeps it: each client (one bus
connection; every bleak scanner of a process shares one) has at most one
discovery session, a second ``StartDiscovery`` from it is refused with
``org.bluez.Error.InProgress``, a ``StopDiscovery`` without one with
``org.bluez.Error.Failed`` ("No discovery started"). The adapter discovers,
and advertisements are heard, while any client has a session. A client that
leaves the bus without stopping (a crash, a kill) loses its session, as BlueZ
sees to on the bus's ``NameOwnerChanged``.

The simulator's own faults (``device.faults``) reach bleak as BlueZ would
report them: a refused connection is a ``Connect`` error, a dropped link is
``Connected=false`` with no ``Disconnect`` call, slow acknowledgements delay the
``WriteValue`` reply, and silenced, delayed, corrupted or truncated frames are
what the device hands over. ``RadioFaults`` adds what only the radio and BlueZ
do: answer the next ``Connect`` calls with a chosen BlueZ error, and break the
link on the host side while the device notices later, or never (``drop``).
"""

from __future__ import annotations

import asyncio
import random
from collections import deque
from dataclasses import dataclass, field

from dbus_fast import BusType, DBusError, Message, MessageType, RequestNameReply
from dbus_fast.aio import MessageBus

from gunctl.specs.models import DeviceSpec
from gunsim.air import ConnectionEvents
from gunsim.bluez.objects import (
    ADAPTER_PATH,
    ERROR_DOES_NOT_EXIST,
    ERROR_FAILED,
    ERROR_IN_PROGRESS,
    ERROR_NOT_CONNECTED,
    ERROR_NOT_PERMITTED,
    Adapter,
    Device,
    GattCharacteristic,
    GattDescriptor,
    GattService,
)
from gunsim.device import LinkRefused, SimDevice
from gunsim.radio import (
    BATTERY,
    CCCD_UUID,
    COMMAND,
    TELEMETRY,
    advertised_name,
    gatt_table,
    manufacturer_data,
    random_mac,
)

BLUEZ_NAME = "org.bluez"
# the bus's word that a client left: its unique name lost its owner
CLIENT_LEFT = (
    "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',"
    "member='NameOwnerChanged'"
)

# BlueZ's answers to a Connect that did not work, as bleak and bleak-retry-connector see them
ABORT_BY_LOCAL = "le-connection-abort-by-local"  # bleak 3.1 itself retries this one
CANCELED = "br-connection-canceled"  # a transient error: bleak-retry-connector backs off, retries
CONNECTION_ABORTED = "Software caused connection abort"  # counted against max_attempts


@dataclass
class RadioFaults:
    """What only the radio and BlueZ can do wrong (the device's own faults are ``device.faults``).

    ``refuse`` answers the next ``Connect`` calls with a chosen BlueZ error, and
    ``Peripheral.drop`` breaks the link on the host side only. The counters
    (connections, refusals, notifications, writes by type, reads) are for tests.
    """

    refusals: deque[str] = field(default_factory=deque)  # BlueZ messages for the next Connects
    connect_calls: int = 0
    refused: int = 0
    notified: int = 0
    writes_with_response: int = 0  # WriteValue with type "request"
    writes_without_response: int = 0  # WriteValue with type "command"
    reads: int = 0  # ReadValue

    def refuse(self, times: int = 1, message: str = CANCELED) -> None:
        self.refusals.extend([message] * times)


class Peripheral:
    """One simulated gun as BlueZ shows it; it is also the device's link (``deliver``/``lost``)."""

    def __init__(
        self,
        fake: FakeBluez,
        device: SimDevice,
        *,
        address: str,
        name: str,
        advertise_services: bool = True,
        advertise_manufacturer_data: bool = True,
        rssi: int = -55,
        mtu: int = 247,
        interval_s: float | None = None,
    ) -> None:
        self.fake = fake
        self.device = device
        self.air = ConnectionEvents(device.clock, interval_s)  # when frames cross
        self.spec: DeviceSpec = device.spec
        self.address = address.upper()
        self.name = name
        self.path = f"{ADAPTER_PATH}/dev_{self.address.replace(':', '_')}"
        self.base_rssi = rssi
        self.rssi = rssi
        self.mtu = mtu
        self.connected = False
        self.services_resolved = False
        self.faults = RadioFaults()
        self.refusal_message = CONNECTION_ABORTED  # what BlueZ says when the device refuses
        self.advertised_services = (self.spec.gatt.service,) if advertise_services else ()
        self.manufacturer_data = manufacturer_data(self.spec, self.address)
        if not advertise_manufacturer_data:
            self.manufacturer_data = {}
        self.iface = Device(self)
        self._gatt: list[tuple[str, GattService | GattCharacteristic | GattDescriptor]] = []
        self._chars: dict[str, GattCharacteristic] = {}
        self._device_notices: asyncio.TimerHandle | None = None
        self._build_gatt()

    # -- GATT layout ---------------------------------------------------------

    def _build_gatt(self) -> None:
        for service in gatt_table(self.spec):
            service_path = f"{self.path}/service{service.handle:04x}"
            self._gatt.append((service_path, GattService(service.uuid, self.path)))
            for c in service.characteristics:
                char_path = f"{service_path}/char{c.handle:04x}"
                char = GattCharacteristic(
                    self, c.role, c.uuid, service_path, list(c.flags), c.value_handle
                )
                self._chars[c.role] = char
                self._gatt.append((char_path, char))
                if c.cccd_handle is not None:
                    desc_path = f"{char_path}/desc{c.cccd_handle:04x}"
                    self._gatt.append((desc_path, GattDescriptor(CCCD_UUID, char_path, char)))

    @property
    def characteristic_paths(self) -> dict[str, str]:
        """Role -> object path of the characteristic playing it."""
        return {obj.role: path for path, obj in self._gatt if isinstance(obj, GattCharacteristic)}

    # -- D-Bus calls ---------------------------------------------------------

    async def connect_request(self) -> None:
        self.faults.connect_calls += 1
        if self.connected:
            return
        if self.faults.refusals:
            message = self.faults.refusals.popleft()
            self.faults.refused += 1
            if message == ABORT_BY_LOCAL:
                # BlueZ did connect at the link layer before aborting: it says so.
                self.iface.emit_properties_changed({"Connected": True})
                self.iface.emit_properties_changed({"Connected": False})
            raise DBusError(ERROR_FAILED, message)
        self._cancel_device_notice()
        try:
            self.device.attach(self)
        except LinkRefused as exc:
            self.faults.refused += 1
            raise DBusError(ERROR_FAILED, self.refusal_message) from exc
        self.connected = True
        self.air.open()
        self.iface.emit_properties_changed({"Connected": True})
        for path, obj in self._gatt:
            self.fake.bus.export(path, obj)
        await asyncio.sleep(0)
        if self.connected:
            self.services_resolved = True
            self.iface.emit_properties_changed({"ServicesResolved": True})

    def disconnect_request(self) -> None:
        if not self.connected:
            return
        self._host_down()
        self.device.detach(self)

    def check_connected(self) -> None:
        if not self.connected:
            raise DBusError(ERROR_NOT_CONNECTED, "Not connected")

    async def write(self, role: str, data: bytes, *, with_response: bool) -> None:
        if role != COMMAND:
            raise DBusError(ERROR_NOT_PERMITTED, "Write not permitted")
        if with_response:
            self.faults.writes_with_response += 1
        else:
            self.faults.writes_without_response += 1
        await self.air.wait()  # the frame goes out at the next connection event
        self.check_connected()
        self.device.receive(data)
        # the acknowledgement rides the next event back, later still with slow acks
        delay = self.device.ack_delay_s() + self.air.ack_s if with_response else 0.0
        if delay > 0:
            await self.device.clock.sleep(delay)
            self.check_connected()

    def read(self, role: str) -> bytes:
        if role != BATTERY:
            raise DBusError(ERROR_NOT_PERMITTED, "Read not permitted")
        self.faults.reads += 1
        try:
            return self.device.read_battery()
        except LookupError as exc:
            raise DBusError(ERROR_DOES_NOT_EXIST, str(exc)) from exc

    # -- the device's link ---------------------------------------------------

    def deliver(self, data: bytes) -> None:
        self.air.carry(bytes(data), self._notify)

    def _notify(self, data: bytes) -> None:
        if not self.connected:
            return
        self.faults.notified += 1
        self._chars[TELEMETRY].notify(data)

    def lost(self, reason: str) -> None:
        """The device ended the link: BlueZ reports Connected=false, with no Disconnect call."""
        if self.connected:
            self._host_down()

    # -- faults --------------------------------------------------------------

    def drop(self, device_notices_after: float | None = 0.0) -> None:
        """The radio link breaks: the host hears of it at once, the device after a delay.

        ``device_notices_after`` is the device's supervision timeout: 0 for at
        once, a number of seconds, or None for never (the firmware's own
        watchdog is then all that stops the motor). The device learns of it as
        a ``timeout``, never as a disconnection the host asked for.
        """
        if not self.connected:
            return
        self._host_down()
        if device_notices_after == 0.0:
            self.device.detach(self, "timeout")
        elif device_notices_after is not None:
            loop = asyncio.get_running_loop()
            self._device_notices = loop.call_later(
                device_notices_after, self.device.detach, self, "timeout"
            )

    # -- inside --------------------------------------------------------------

    def _cancel_device_notice(self) -> None:
        if self._device_notices is not None:
            self._device_notices.cancel()
            self._device_notices = None

    def _host_down(self) -> None:
        self.connected = False
        self.services_resolved = False
        for char in self._chars.values():
            char.notifying = False
        self.iface.emit_properties_changed({"ServicesResolved": False, "Connected": False})
        for path, _ in reversed(self._gatt):
            self.fake.bus.unexport(path)

    def announce(self, rng: random.Random) -> None:
        """An advertisement heard while scanning: BlueZ updates RSSI, bleak sees the device."""
        self.rssi = self.base_rssi + rng.randint(-3, 3)
        self.iface.emit_properties_changed({"RSSI": self.rssi})


class FakeBluez:
    """``org.bluez`` on one bus: an adapter and the peripherals added to it."""

    def __init__(
        self, bus_address: str, *, adapter_address: str = "00:1A:7D:DA:71:00", seed: int = 0
    ) -> None:
        self.bus_address = bus_address
        self.adapter = Adapter(self, adapter_address)
        self.peripherals: dict[str, Peripheral] = {}
        self.rng = random.Random(f"gunsim.bluez/{seed}")
        self.advertise_period_s = 0.25
        self._bus: MessageBus | None = None
        self._advertiser: asyncio.Task[None] | None = None
        self._discoveries: set[str] = set()  # the clients (unique bus names) discovering
        self.caller = ""  # the unique bus name of the method call being served

    @property
    def bus(self) -> MessageBus:
        if self._bus is None:
            raise RuntimeError("the fake BlueZ is not started")
        return self._bus

    async def start(self) -> None:
        bus = MessageBus(bus_address=self.bus_address, bus_type=BusType.SYSTEM)
        await bus.connect()
        self._bus = bus
        bus.add_message_handler(self._note)
        await bus.call(
            Message(
                destination="org.freedesktop.DBus",
                path="/org/freedesktop/DBus",
                interface="org.freedesktop.DBus",
                member="AddMatch",
                signature="s",
                body=[CLIENT_LEFT],
            )
        )
        bus.export(ADAPTER_PATH, self.adapter)
        reply = await bus.request_name(BLUEZ_NAME)
        if reply is not RequestNameReply.PRIMARY_OWNER:
            raise RuntimeError(f"could not own {BLUEZ_NAME} on {self.bus_address}: {reply}")
        for peripheral in self.peripherals.values():
            bus.export(peripheral.path, peripheral.iface)

    async def aclose(self) -> None:
        """Drop every connection (the devices see the host leave) and leave the bus."""
        self.stop_discovery()
        for peripheral in self.peripherals.values():
            if peripheral.connected:
                peripheral.disconnect_request()
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None

    async def __aenter__(self) -> FakeBluez:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def add(
        self,
        device: SimDevice,
        *,
        address: str | None = None,
        name: str | None = None,
        advertise_services: bool = True,
        advertise_manufacturer_data: bool = True,
        rssi: int = -55,
        mtu: int = 247,
        interval_s: float | None = None,
    ) -> Peripheral:
        """Make ``device`` a peripheral; its address and name default to believable ones."""
        address = address or random_mac(len(self.peripherals) + 1, self.rng)
        peripheral = Peripheral(
            self,
            device,
            address=address,
            name=name or advertised_name(device.spec, address),
            advertise_services=advertise_services,
            advertise_manufacturer_data=advertise_manufacturer_data,
            rssi=rssi,
            mtu=mtu,
            interval_s=interval_s,
        )
        if peripheral.address in self.peripherals:
            raise ValueError(f"{peripheral.address} is already on the fake adapter")
        self.peripherals[peripheral.address] = peripheral
        if self._bus is not None:
            self._bus.export(peripheral.path, peripheral.iface)
        return peripheral

    def peripheral(self, address: str) -> Peripheral:
        return self.peripherals[address.upper()]

    # -- Adapter1 ------------------------------------------------------------

    def _note(self, message: Message) -> None:
        """Who calls (the method runs right after this, in the same turn of the loop); who left."""
        if message.message_type is MessageType.METHOD_CALL:
            self.caller = message.sender or ""
        elif (
            message.message_type is MessageType.SIGNAL
            and message.member == "NameOwnerChanged"
            and message.sender == "org.freedesktop.DBus"
        ):
            name, _, new_owner = message.body
            if not new_owner and name in self._discoveries:
                self.stop_discovery(name)

    def start_discovery(self, client: str) -> None:
        """``client``'s discovery session: one each, as in BlueZ; a second is InProgress."""
        if client in self._discoveries:
            raise DBusError(ERROR_IN_PROGRESS, "Operation already in progress")
        self._discoveries.add(client)
        if self.adapter.discovering:
            return
        self.adapter.discovering = True
        self.adapter.emit_properties_changed({"Discovering": True})
        self._advertiser = asyncio.get_running_loop().create_task(self._advertise())

    def stop_discovery(self, client: str | None = None) -> None:
        """End ``client``'s session (every one with None); the adapter stops with the last."""
        if client is None:
            self._discoveries.clear()
        elif client in self._discoveries:
            self._discoveries.remove(client)
        else:
            raise DBusError(ERROR_FAILED, "No discovery started")
        if self._discoveries:
            return
        if self._advertiser is not None:
            self._advertiser.cancel()
            self._advertiser = None
        if self.adapter.discovering:
            self.adapter.discovering = False
            self.adapter.emit_properties_changed({"Discovering": False})

    def remove_device(self, path: str) -> None:
        for peripheral in self.peripherals.values():
            if peripheral.path == path:
                if peripheral.connected:
                    peripheral.disconnect_request()
                return
        raise DBusError(ERROR_DOES_NOT_EXIST, "Does Not Exist")

    async def _advertise(self) -> None:
        # A device already known before discovery starts is only reported to a
        # scanner by a signal: every advertisement updates RSSI, as BlueZ does.
        while True:
            for peripheral in self.peripherals.values():
                if not peripheral.connected:
                    peripheral.announce(self.rng)
            await asyncio.sleep(self.advertise_period_s)
