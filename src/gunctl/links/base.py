"""The link: how bytes reach a device and come back, whatever carries them.

A link knows GATT endpoints by role (``command``, ``telemetry``, ``battery``),
not by UUID: the firmware spec maps roles to UUIDs, and the BLE link does the
lookup. The simulator's in-process link and the bleak link both implement this
protocol, so the Supervisor above cannot tell them apart.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable


class Endpoint(StrEnum):
    COMMAND = "command"  # host writes frames here
    TELEMETRY = "telemetry"  # device notifies frames here
    BATTERY = "battery"  # the standard Battery Level characteristic (0x2A19)


@dataclass(frozen=True)
class Notification:
    endpoint: Endpoint
    data: bytes
    received_at: float  # clock seconds when the link handed it over


class LinkError(Exception):
    """A link operation failed; the device may or may not have seen it."""


class NotConnectedError(LinkError):
    """The operation needs a connection that is not there (never made, or lost)."""


class ConnectError(LinkError):
    """A connection could not be made after every attempt the link allows."""


@runtime_checkable
class Link(Protocol):
    @property
    def address(self) -> str:
        """A stable identifier of the device (BLE address, or a simulator id)."""
        ...

    @property
    def connected(self) -> bool: ...

    async def connect(self) -> None:
        """Connect and subscribe to notifications; raises ConnectError."""
        ...

    async def disconnect(self) -> None:
        """Close the link on purpose. Safe to call when already closed."""
        ...

    async def write(self, endpoint: Endpoint, data: bytes, *, with_response: bool) -> None:
        """Write one frame; raises NotConnectedError or LinkError."""
        ...

    async def read(self, endpoint: Endpoint) -> bytes:
        """Read a characteristic's value; raises NotConnectedError or LinkError."""
        ...

    def notifications(self) -> AsyncIterator[Notification]:
        """Every notification from now on, in arrival order, until the link closes."""
        ...

    async def wait_disconnected(self) -> str:
        """Return once the link is gone, with the reason (``requested``, ``lost``, ...)."""
        ...
