"""A fake BlueZ on a private D-Bus: simulated guns as BLE peripherals for unmodified bleak.

``private_bus()`` starts a dbus-daemon of its own; ``FakeBluez`` owns
``org.bluez`` on it and turns ``SimDevice`` objects into peripherals. Set
``DBUS_SYSTEM_BUS_ADDRESS`` to the bus address and bleak talks to the fake as
it would to BlueZ. ``python -m gunsim.bluez`` runs one for people to try.
"""

from gunsim.bluez.bus import BOOTSTRAP_HINT, BusUnavailableError, private_bus, private_bus_sync
from gunsim.bluez.fake import (
    ABORT_BY_LOCAL,
    CANCELED,
    CONNECTION_ABORTED,
    FakeBluez,
    Peripheral,
    RadioFaults,
)
from gunsim.radio import advertised_name

__all__ = [
    "ABORT_BY_LOCAL",
    "BOOTSTRAP_HINT",
    "CANCELED",
    "CONNECTION_ABORTED",
    "BusUnavailableError",
    "FakeBluez",
    "Peripheral",
    "RadioFaults",
    "advertised_name",
    "private_bus",
    "private_bus_sync",
]
