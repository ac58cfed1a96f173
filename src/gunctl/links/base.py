"""The link: how bytes reach a device and come back, whatever carries them.

A link knows GATT endpoints by role (``command``, ``telemetry``, ``battery``),
not by UUID: the firmware spec maps roles to UUIDs, and the BLE link does the
lookup. The simulator's in-process link and the bleak link both implement this
protocol, so the Supervisor above cannot tell them apart.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol, runtime_checkable

# the link errors, defined with every other public error, are raised from here
from gunctl.errors import ConnectError as ConnectError
from gunctl.errors import LinkError as LinkError
from gunctl.errors import LinkLostError as LinkLostError


class Endpoint(StrEnum):
    COMMAND = "command"  # host writes frames here
    TELEMETRY = "telemetry"  # device notifies frames here
    BATTERY = "battery"  # the standard Battery Level characteristic (0x2A19)


@dataclass(frozen=True)
class Notification:
    endpoint: Endpoint
    data: bytes
    received_at: float  # clock seconds when the link handed it over


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
        """Write one frame; raises LinkLostError or LinkError."""
        ...

    async def read(self, endpoint: Endpoint) -> bytes:
        """Read a characteristic's value; raises LinkLostError or LinkError."""
        ...

    def notifications(self) -> AsyncIterator[Notification]:
        """Every notification from now on, in arrival order, until the link closes."""
        ...

    async def wait_disconnected(self) -> str:
        """Return once the link is gone, with the reason (``requested``, ``lost``, ...)."""
        ...


class Lifetime:
    """One connection's life, as every link keeps it.

    It fans each notification out to every listener, ends their streams when
    the connection ends, and tells anyone waiting why it ended. A link opens a
    new lifetime on each connect and closes it, with a reason, exactly once.
    """

    def __init__(self) -> None:
        self.up = False
        self.reason: str | None = None  # why the last connection ended
        self._listeners: list[asyncio.Queue[Notification | None]] = []
        self._gone: asyncio.Future[str] | None = None

    @property
    def token(self) -> object:
        """Differs for each connection, so a caller can tell the link went and came back."""
        return self._gone

    def open(self) -> None:
        self.up = True
        self.reason = None
        self._gone = asyncio.get_running_loop().create_future()

    def publish(self, note: Notification) -> None:
        for queue in self._listeners:
            queue.put_nowait(note)

    def close(self, reason: str) -> None:
        self.up = False
        self.reason = reason
        for queue in self._listeners:
            queue.put_nowait(None)
        self._listeners.clear()
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(reason)

    def stream(self) -> AsyncIterator[Notification]:
        """Every notification from now until the connection ends (empty if it is down)."""
        queue: asyncio.Queue[Notification | None] = asyncio.Queue()
        if self.up:
            self._listeners.append(queue)
        else:
            queue.put_nowait(None)
        return self._drain(queue)

    async def wait_closed(self) -> str:
        if not self.up or self._gone is None:
            return self.reason or "requested"
        return await asyncio.shield(self._gone)

    async def _drain(
        self, queue: asyncio.Queue[Notification | None]
    ) -> AsyncIterator[Notification]:
        try:
            while (note := await queue.get()) is not None:
                yield note
        finally:
            if queue in self._listeners:
                self._listeners.remove(queue)
