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
- ``listen()`` and ``notifications()``: each call gets every notification from that moment on,
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

from collections.abc import AsyncIterator, Callable

from gunctl.links.base import (
    ConnectError,
    Endpoint,
    Lifetime,
    LinkError,
    LinkLostError,
    Notification,
    Receiver,
)
from gunsim.air import ConnectionEvents
from gunsim.device import LinkRefused, SimDevice


class SimLink:
    def __init__(self, device: SimDevice, *, interval_s: float | None = None) -> None:
        self.device = device
        self.clock = device.clock
        self._air = ConnectionEvents(device.clock, interval_s)
        self._life = Lifetime()

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

    @property
    def in_process(self) -> bool:
        return True

    async def connect(self) -> None:
        if self._life.up:
            return
        try:
            self.device.attach(self)
        except LinkRefused as exc:
            raise ConnectError(str(exc)) from exc
        self._life.open()
        self._air.open()

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
        await self._air.wait()
        if self._life.token is not connection:
            raise LinkError("the link went before the frame was sent")
        self.device.receive(data)
        # the acknowledgement rides the next connection event back
        delay = self.device.ack_delay_s() + self._air.ack_s if with_response else 0.0
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

    def listen(self, receive: Receiver) -> Callable[[], None]:
        return self._life.listen(receive)

    def notifications(self) -> AsyncIterator[Notification]:
        return self._life.stream()

    async def wait_disconnected(self) -> str:
        return await self._life.wait_closed()

    # -- called by the device --------------------------------------------------

    def deliver(self, data: bytes) -> None:
        self._air.carry(bytes(data), self._arrived)

    def lost(self, reason: str) -> None:
        self._life.close(reason)

    # -- inside ----------------------------------------------------------------

    def _arrived(self, data: bytes) -> None:
        self._life.publish(Notification(Endpoint.TELEMETRY, data, self.clock.now()))

    def _check(self) -> None:
        if not self._life.up:
            raise LinkLostError(f"{self.address} is not connected")
