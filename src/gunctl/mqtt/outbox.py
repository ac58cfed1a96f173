"""What gunctl publishes goes through one outbox, drained in order by one sender.

Session events and results produced while the broker is away wait here (up to
:data:`OUTBOX_MAX`, the oldest dropped first) and go out after the reconnect.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiomqtt
from paho.mqtt.properties import Properties

if TYPE_CHECKING:
    from aiomqtt.types import PayloadType

OUTBOX_MAX = 2000  # events and results kept while the broker is away


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: PayloadType
    qos: int = 1
    retain: bool = False
    properties: Properties | None = None


def as_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class Outbox:
    def __init__(self) -> None:
        self._queue: deque[Outgoing] = deque()
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # set while the outbox is empty

    def __len__(self) -> int:
        return len(self._queue)

    def put(self, message: Outgoing) -> None:
        if len(self._queue) >= OUTBOX_MAX:
            self._queue.popleft()
        self._queue.append(message)
        self._drained.clear()
        self._wake.set()

    async def flushed(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far has gone to the broker."""
        await asyncio.wait_for(self._drained.wait(), timeout)

    async def send(self, client: aiomqtt.Client) -> None:
        """Publish what is queued, in order, for as long as ``client`` is connected."""
        while True:
            while self._queue:
                message = self._queue[0]
                await client.publish(
                    message.topic,
                    message.payload,
                    qos=message.qos,
                    retain=message.retain,
                    properties=message.properties,
                )
                if self._queue and self._queue[0] is message:
                    self._queue.popleft()
            self._drained.set()
            self._wake.clear()
            await self._wake.wait()
