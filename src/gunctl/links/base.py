"""The link: how bytes reach a device and come back, whatever carries them.

A link knows GATT endpoints by role (``command``, ``telemetry``, ``battery``),
not by UUID: the firmware spec maps roles to UUIDs, and the BLE link does the
lookup. The simulator's in-process link and the bleak link both implement this
protocol, so the Supervisor above cannot tell them apart.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import AsyncIterator, Callable
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


# called with each notification as it arrives, and with None when the connection ends
Receiver = Callable[[Notification | None], None]


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

    def listen(self, receive: Receiver) -> Callable[[], None]:
        """Hand ``receive`` every notification from now on, as it arrives, in arrival order.

        It is called inside the link's own callback (bleak's, the simulated
        gun's), so it returns at once and never raises; it gets ``None`` once,
        when the connection ends (at once if the link is down). The function
        returned stops the calls.
        """
        ...

    def notifications(self) -> AsyncIterator[Notification]:
        """Every notification from now on, in arrival order, until the link closes.

        A listener of its own, for tools and tests that read at their own
        pace: one that falls behind by ``FANOUT_BOUND`` frames loses the
        oldest ones (see ``Lifetime``); ``coalesced`` counts them.
        """
        ...

    @property
    def coalesced(self) -> int:
        """Notifications given up because a listener had fallen too far behind."""
        ...

    @property
    def in_process(self) -> bool:
        """True when the device runs in this event loop (a simulated gun).

        A pause of the host then pauses the device too, so its silence
        through that pause is not the device's (``Clock.host_pause``).
        """
        ...

    async def wait_disconnected(self) -> str:
        """Return once the link is gone, with the reason (``requested``, ``lost``, ...)."""
        ...


# Frames a listener may fall behind before its oldest give way: 2.5 s of 25 Hz telemetry.
FANOUT_BOUND = 64


class Lifetime:
    """One connection's life, as every link keeps it.

    It hands each notification to every listener as it arrives (a plain call:
    the Supervisor decodes a frame and runs its rules on it there, with no
    queue and no task woken per frame), tells each listener when the
    connection ends, and tells anyone waiting why it ended. A link opens a new
    lifetime on each connect and closes it, with a reason, exactly once.

    A stream (``stream()``) is a listener with a queue, for readers that take
    frames at their own pace. Each holds at most ``FANOUT_BOUND`` frames. A
    stream that falls that far behind loses its oldest frame to each new one:
    telemetry is state, and the newest frame says what the device is doing now
    (a fault flag or a temperature is in every frame, not only the first).
    Each frame given up is counted in ``coalesced``. The end of the stream is
    never given up: it always reaches the reader, after whatever frames it
    still holds.
    """

    def __init__(self, bound: int = FANOUT_BOUND) -> None:
        if bound < 1:
            raise ValueError("a listener must hold at least one frame")
        self.up = False
        self.reason: str | None = None  # why the last connection ended
        self.bound = bound
        self.coalesced = 0  # frames given up because a listener was full, over every connection
        self._listeners: list[Receiver] = []
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
        for receive in tuple(self._listeners):
            receive(note)

    def close(self, reason: str) -> None:
        self.up = False
        self.reason = reason
        listeners, self._listeners = self._listeners, []
        for receive in listeners:
            receive(None)
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(reason)

    def listen(self, receive: Receiver) -> Callable[[], None]:
        """See ``Link.listen``."""
        if not self.up:
            receive(None)
            return _nothing
        self._listeners.append(receive)
        return functools.partial(self._forget, receive)

    def _forget(self, receive: Receiver) -> None:
        if receive in self._listeners:
            self._listeners.remove(receive)

    def _put(self, queue: asyncio.Queue[Notification | None], item: Notification | None) -> None:
        if queue.full():
            queue.get_nowait()  # the oldest frame gives way
            self.coalesced += 1
        queue.put_nowait(item)

    def stream(self) -> AsyncIterator[Notification]:
        """Every notification from now until the connection ends (empty if it is down)."""
        queue: asyncio.Queue[Notification | None] = asyncio.Queue(self.bound)
        return self._drain(queue, self.listen(functools.partial(self._put, queue)))

    async def wait_closed(self) -> str:
        if not self.up or self._gone is None:
            return self.reason or "requested"
        return await asyncio.shield(self._gone)

    @staticmethod
    async def _drain(
        queue: asyncio.Queue[Notification | None], forget: Callable[[], None]
    ) -> AsyncIterator[Notification]:
        try:
            while (note := await queue.get()) is not None:
                yield note
        finally:
            forget()


def _nothing() -> None:
    return None
