"""The in-process link to a simulated device (``gunsim.SimDevice``).

It behaves as the BLE link does, seen from above: connect, write frames to the
command characteristic, read the battery level, receive telemetry
notifications, and learn when the link has gone and why. The device's fault
script can refuse connections, slow down write acknowledgements, and drop the
link cleanly or abruptly; the link reports each as the BLE link would.

- ``connect()``: each attempt the device refuses raises ``ConnectError``
  straight away (there is no retry inside; the caller's retry policy decides);
  connecting when connected does nothing.
- ``write()``: the firmware handles the frame at once; a write with response
  returns when the acknowledgement comes back, which a slow-ack fault delays.
  If the link goes while waiting, ``LinkError`` is raised.
- ``notifications()``: each call gets every notification from that moment on,
  in arrival order, and ends when the link closes (at once if not connected).
- ``wait_disconnected()``: ``requested`` after ``disconnect()``, ``lost`` after
  an abrupt drop, ``remote`` when the device closed the link cleanly.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gunctl.links.base import (
    ConnectError,
    Endpoint,
    LinkError,
    NotConnectedError,
    Notification,
)
from gunsim.device import LinkRefused, SimDevice


class SimLink:
    def __init__(self, device: SimDevice) -> None:
        self.device = device
        self.clock = device.clock
        self._connected = False
        self._subscribers: list[asyncio.Queue[Notification | None]] = []
        self._gone: asyncio.Future[str] | None = None
        self.reason: str | None = None  # why the last connection ended

    @property
    def address(self) -> str:
        return self.device.address

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self) -> None:
        if self._connected:
            return
        try:
            self.device.attach(self)
        except LinkRefused as exc:
            raise ConnectError(str(exc)) from exc
        self._connected = True
        self.reason = None
        self._gone = asyncio.get_running_loop().create_future()

    async def disconnect(self) -> None:
        if not self._connected:
            return
        self._close("requested")
        self.device.detach(self)

    async def write(self, endpoint: Endpoint, data: bytes, *, with_response: bool) -> None:
        self._check()
        if endpoint is not Endpoint.COMMAND:
            raise LinkError(f"{endpoint.value} is not writable")
        gone = self._gone
        self.device.receive(data)
        delay = self.device.ack_delay_s() if with_response else 0.0
        if delay > 0:
            await self.clock.sleep(delay)
        if with_response and (not self._connected or self._gone is not gone):
            raise LinkError("the link went before the write was acknowledged")

    async def read(self, endpoint: Endpoint) -> bytes:
        self._check()
        if endpoint is not Endpoint.BATTERY:
            raise LinkError(f"{endpoint.value} is not readable")
        try:
            return self.device.read_battery()
        except LookupError as exc:
            raise LinkError(str(exc)) from exc

    def notifications(self) -> AsyncIterator[Notification]:
        queue: asyncio.Queue[Notification | None] = asyncio.Queue()
        if self._connected:
            self._subscribers.append(queue)
        else:
            queue.put_nowait(None)
        return self._drain(queue)

    async def wait_disconnected(self) -> str:
        if not self._connected or self._gone is None:
            return self.reason or "requested"
        return await asyncio.shield(self._gone)

    # -- called by the device --------------------------------------------------

    def deliver(self, data: bytes) -> None:
        note = Notification(Endpoint.TELEMETRY, bytes(data), self.clock.now())
        for queue in self._subscribers:
            queue.put_nowait(note)

    def lost(self, reason: str) -> None:
        self._close(reason)

    # -- inside ----------------------------------------------------------------

    def _check(self) -> None:
        if not self._connected:
            raise NotConnectedError(f"{self.address} is not connected")

    def _close(self, reason: str) -> None:
        self._connected = False
        self.reason = reason
        for queue in self._subscribers:
            queue.put_nowait(None)
        self._subscribers.clear()
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(reason)

    async def _drain(
        self, queue: asyncio.Queue[Notification | None]
    ) -> AsyncIterator[Notification]:
        try:
            while (note := await queue.get()) is not None:
                yield note
        finally:
            if queue in self._subscribers:
                self._subscribers.remove(queue)
