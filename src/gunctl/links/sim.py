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
- ``interval_s`` models a Bluetooth LE connection interval (7.5 ms to 4 s): the
  air carries frames only at connection events, one every interval from the
  moment the link connected. A write reaches the device at the next event, and
  a write with response returns one event later, when the acknowledgement
  comes back; a notification reaches the host at the next event. Without it
  (the default) frames cross at once.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator

from gunctl.links.base import (
    ConnectError,
    Endpoint,
    Lifetime,
    LinkError,
    LinkLostError,
    Notification,
)
from gunsim.device import LinkRefused, SimDevice


class SimLink:
    def __init__(self, device: SimDevice, *, interval_s: float | None = None) -> None:
        if interval_s is not None and not 0.0075 <= interval_s <= 4.0:
            raise ValueError("a connection interval is 7.5 ms to 4 s")
        self.device = device
        self.clock = device.clock
        self.interval_s = interval_s
        self._life = Lifetime()
        self._anchor = 0.0  # clock time of the first connection event
        self._air: list[bytes] = []  # notifications waiting for the next connection event

    @property
    def address(self) -> str:
        return self.device.address

    @property
    def connected(self) -> bool:
        return self._life.up

    @property
    def reason(self) -> str | None:
        """Why the last connection ended."""
        return self._life.reason

    @property
    def coalesced(self) -> int:
        return self._life.coalesced

    async def connect(self) -> None:
        if self._life.up:
            return
        try:
            self.device.attach(self)
        except LinkRefused as exc:
            raise ConnectError(str(exc)) from exc
        self._life.open()
        self._anchor = self.clock.now()

    async def disconnect(self) -> None:
        if not self._life.up:
            return
        self._life.close("requested")
        self.device.detach(self)

    async def write(self, endpoint: Endpoint, data: bytes, *, with_response: bool) -> None:
        self._check()
        if endpoint is not Endpoint.COMMAND:
            raise LinkError(f"{endpoint.value} is not writable")
        connection = self._life.token
        if self.interval_s is not None:
            await self.clock.sleep(self._next_event() - self.clock.now())
            if self._life.token is not connection:
                raise LinkError("the link went before the frame was sent")
        self.device.receive(data)
        delay = self.device.ack_delay_s() if with_response else 0.0
        if with_response and self.interval_s is not None:
            delay += self.interval_s  # the acknowledgement rides the next event back
        if delay > 0:
            await self.clock.sleep(delay)
        if with_response and (not self._life.up or self._life.token is not connection):
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
        return self._life.stream()

    async def wait_disconnected(self) -> str:
        return await self._life.wait_closed()

    # -- called by the device --------------------------------------------------

    def deliver(self, data: bytes) -> None:
        if self.interval_s is None:
            self._life.publish(Notification(Endpoint.TELEMETRY, bytes(data), self.clock.now()))
            return
        if not self._air:  # the first waiting frame books the next event for all of them
            wait = (self._next_event() - self.clock.now()) / self.clock.scale
            asyncio.get_running_loop().call_later(wait, self._land, self._life.token)
        self._air.append(bytes(data))

    def lost(self, reason: str) -> None:
        self._life.close(reason)

    # -- inside ----------------------------------------------------------------

    def _next_event(self) -> float:
        """Clock time of the next connection event (now, if one is due now)."""
        assert self.interval_s is not None
        since = self.clock.now() - self._anchor
        return self._anchor + math.ceil(since / self.interval_s) * self.interval_s

    def _land(self, connection: object) -> None:
        frames, self._air = self._air, []
        if self._life.token is connection:  # not for a link that has gone meanwhile
            for data in frames:
                self._life.publish(Notification(Endpoint.TELEMETRY, data, self.clock.now()))

    def _check(self) -> None:
        if not self._life.up:
            raise LinkLostError(f"{self.address} is not connected")
