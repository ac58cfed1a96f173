"""The BlueZ D-Bus interfaces the fake exports: Adapter1, Device1, and the GATT objects.

Only what bleak and bleak-retry-connector read or call is here (see
``gunsim.bluez.fake`` for the behaviour behind each method). dbus-fast reads the
D-Bus signatures from these annotations at runtime, which is why this module
does not postpone their evaluation.
"""

from typing import TYPE_CHECKING, Annotated

from dbus_fast import DBusError, Variant
from dbus_fast.annotations import (
    DBusBool,
    DBusBytes,
    DBusDict,
    DBusInt16,
    DBusObjectPath,
    DBusStr,
    DBusUInt16,
    DBusUInt32,
)
from dbus_fast.annotations import DBusSignature as Sig
from dbus_fast.constants import PropertyAccess
from dbus_fast.service import ServiceInterface, dbus_method, dbus_property

if TYPE_CHECKING:
    from gunsim.bluez.fake import FakeBluez, Peripheral

StrList = Annotated[list[str], Sig("as")]
ManufacturerDict = Annotated[dict[int, Variant], Sig("a{qv}")]

ADAPTER_PATH = "/org/bluez/hci0"
ERROR_FAILED = "org.bluez.Error.Failed"
ERROR_IN_PROGRESS = "org.bluez.Error.InProgress"
ERROR_NOT_PERMITTED = "org.bluez.Error.NotPermitted"
ERROR_NOT_CONNECTED = "org.bluez.Error.NotConnected"
ERROR_INVALID_LENGTH = "org.bluez.Error.InvalidValueLength"
ERROR_DOES_NOT_EXIST = "org.bluez.Error.DoesNotExist"


class Adapter(ServiceInterface):
    def __init__(self, fake: "FakeBluez", address: str) -> None:
        super().__init__("org.bluez.Adapter1")
        self.fake = fake
        self.address = address
        self.discovering = False

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> DBusStr:
        return self.address

    @dbus_property(access=PropertyAccess.READ)
    def AddressType(self) -> DBusStr:
        return "public"

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> DBusStr:
        return "gunsim"

    @dbus_property(access=PropertyAccess.READ)
    def Alias(self) -> DBusStr:
        return "gunsim"

    @dbus_property(access=PropertyAccess.READ)
    def Class(self) -> DBusUInt32:
        return 0

    @dbus_property(access=PropertyAccess.READ)
    def Powered(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def Discoverable(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def Pairable(self) -> DBusBool:
        return True

    @dbus_property(access=PropertyAccess.READ)
    def Discovering(self) -> DBusBool:
        return self.discovering

    @dbus_property(access=PropertyAccess.READ)
    def Roles(self) -> StrList:
        return ["central", "peripheral"]

    @dbus_property(access=PropertyAccess.READ)
    def UUIDs(self) -> StrList:
        return []

    @dbus_method()
    def SetDiscoveryFilter(self, properties: DBusDict) -> None:
        pass

    @dbus_method()
    def StartDiscovery(self) -> None:
        self.fake.start_discovery(self.fake.caller)

    @dbus_method()
    def StopDiscovery(self) -> None:
        self.fake.stop_discovery(self.fake.caller)

    @dbus_method()
    def RemoveDevice(self, device: DBusObjectPath) -> None:
        self.fake.remove_device(device)


class Device(ServiceInterface):
    def __init__(self, peripheral: "Peripheral") -> None:
        super().__init__("org.bluez.Device1")
        self.p = peripheral
        self.trusted = False

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> DBusStr:
        return self.p.address

    @dbus_property(access=PropertyAccess.READ)
    def AddressType(self) -> DBusStr:
        return "random"

    @dbus_property(access=PropertyAccess.READ)
    def Name(self) -> DBusStr:
        return self.p.name

    @dbus_property(access=PropertyAccess.READ)
    def Alias(self) -> DBusStr:
        return self.p.name

    @dbus_property(access=PropertyAccess.READ)
    def Adapter(self) -> DBusObjectPath:
        return ADAPTER_PATH

    @dbus_property(access=PropertyAccess.READ)
    def Paired(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def Bonded(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READWRITE)
    def Trusted(self) -> DBusBool:
        return self.trusted

    @Trusted.setter  # type: ignore[no-redef]
    def Trusted(self, value: DBusBool) -> None:
        self.trusted = value

    @dbus_property(access=PropertyAccess.READ)
    def Blocked(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def LegacyPairing(self) -> DBusBool:
        return False

    @dbus_property(access=PropertyAccess.READ)
    def Connected(self) -> DBusBool:
        return self.p.connected

    @dbus_property(access=PropertyAccess.READ)
    def ServicesResolved(self) -> DBusBool:
        return self.p.services_resolved

    @dbus_property(access=PropertyAccess.READ)
    def RSSI(self) -> DBusInt16:
        return self.p.rssi

    @dbus_property(access=PropertyAccess.READ)
    def TxPower(self) -> DBusInt16:
        return 0

    @dbus_property(access=PropertyAccess.READ)
    def UUIDs(self) -> StrList:
        return list(self.p.advertised_services)

    @dbus_property(access=PropertyAccess.READ)
    def ManufacturerData(self) -> ManufacturerDict:
        return {cid: Variant("ay", data) for cid, data in self.p.manufacturer_data.items()}

    @dbus_property(access=PropertyAccess.READ)
    def ServiceData(self) -> DBusDict:
        return {}

    @dbus_method()
    async def Connect(self) -> None:
        await self.p.connect_request()

    @dbus_method()
    async def Pair(self) -> None:
        # bleak calls Pair instead of Connect when asked to pair: it must connect too.
        await self.p.connect_request()

    @dbus_method()
    def Disconnect(self) -> None:
        self.p.disconnect_request()


class GattService(ServiceInterface):
    def __init__(self, uuid: str, device_path: str, primary: bool = True) -> None:
        super().__init__("org.bluez.GattService1")
        self.uuid = uuid
        self.device_path = device_path
        self.primary = primary

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:
        return self.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Device(self) -> DBusObjectPath:
        return self.device_path

    @dbus_property(access=PropertyAccess.READ)
    def Primary(self) -> DBusBool:
        return self.primary


class GattCharacteristic(ServiceInterface):
    """One characteristic; the peripheral decides what reads and writes mean."""

    def __init__(
        self,
        peripheral: "Peripheral",
        role: str,
        uuid: str,
        service_path: str,
        flags: list[str],
        handle: int,
    ) -> None:
        super().__init__("org.bluez.GattCharacteristic1")
        self.p = peripheral
        self.role = role
        self.uuid = uuid
        self.service_path = service_path
        self.flags = flags
        self.handle = handle
        self.value = b""
        self.notifying = False

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:
        return self.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Service(self) -> DBusObjectPath:
        return self.service_path

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> StrList:
        return list(self.flags)

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> DBusBytes:
        return self.value

    @dbus_property(access=PropertyAccess.READ)
    def Notifying(self) -> DBusBool:
        return self.notifying

    @dbus_property(access=PropertyAccess.READ)
    def MTU(self) -> DBusUInt16:
        return self.p.mtu

    @dbus_property(access=PropertyAccess.READ)
    def Handle(self) -> DBusUInt16:
        return self.handle

    @dbus_method()
    def ReadValue(self, options: DBusDict) -> DBusBytes:
        self.p.check_connected()
        if "read" not in self.flags:
            raise DBusError(ERROR_NOT_PERMITTED, "Read not permitted")
        self.value = self.p.read(self.role)
        return self.value

    @dbus_method()
    async def WriteValue(self, value: DBusBytes, options: DBusDict) -> None:
        self.p.check_connected()
        kind = options["type"].value if "type" in options else "request"
        allowed = "write-without-response" if kind == "command" else "write"
        if allowed not in self.flags:
            raise DBusError(ERROR_NOT_PERMITTED, "Write not permitted")
        if len(value) > self.p.mtu - 3:
            raise DBusError(ERROR_INVALID_LENGTH, "Invalid Length")
        await self.p.write(self.role, bytes(value), with_response=kind != "command")

    @dbus_method()
    def StartNotify(self) -> None:
        self.p.check_connected()
        if "notify" not in self.flags and "indicate" not in self.flags:
            raise DBusError(ERROR_NOT_PERMITTED, "Notify not permitted")
        if not self.notifying:
            self.notifying = True
            self.emit_properties_changed({"Notifying": True})

    @dbus_method()
    def StopNotify(self) -> None:
        if self.notifying:
            self.notifying = False
            self.emit_properties_changed({"Notifying": False})

    def notify(self, data: bytes) -> None:
        """A notification: BlueZ sends every one as a Value change, same bytes or not."""
        self.value = data
        if self.notifying:
            self.emit_properties_changed({"Value": data})


class GattDescriptor(ServiceInterface):
    def __init__(self, uuid: str, characteristic_path: str, characteristic: GattCharacteristic):
        super().__init__("org.bluez.GattDescriptor1")
        self.uuid = uuid
        self.characteristic_path = characteristic_path
        self.characteristic = characteristic

    @dbus_property(access=PropertyAccess.READ)
    def UUID(self) -> DBusStr:
        return self.uuid

    @dbus_property(access=PropertyAccess.READ)
    def Characteristic(self) -> DBusObjectPath:
        return self.characteristic_path

    @dbus_property(access=PropertyAccess.READ)
    def Value(self) -> DBusBytes:
        return bytes([1 if self.characteristic.notifying else 0, 0])

    @dbus_method()
    def ReadValue(self, options: DBusDict) -> DBusBytes:
        return bytes([1 if self.characteristic.notifying else 0, 0])
