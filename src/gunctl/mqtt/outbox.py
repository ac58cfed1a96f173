"""What gunctl publishes goes through one outbox, drained in order by one sender.

Messages made while the broker is away or slow wait here, and what waits is
bounded by kind:

- **latest only**: a retained message (state, availability, discovery,
  diagnostics) or telemetry. Only the newest on a topic matters, so a newer
  one takes the place of the one waiting (counted as ``coalesced``): at most
  one waits per topic, a handful per gun;
- **answers** (results of commands that are not stops, refusals of junk): at
  most :data:`ANSWERS_MAX` wait; past that the oldest is dropped and counted
  (``dropped``). The intake stops answering refusals long before (``BACKLOG``);
- **kept**: events and the results of stops and stop_all are never dropped.
  They come only from what the guns do and from stops carried out, both
  bounded by the guns' lanes, and from refusals, rationed where they are
  made (:mod:`gunctl.mqtt.tally`); past :data:`KEPT_WARN` waiting, a warning
  says the broker is not taking them.

Everything goes out in the order it was put (a coalesced message keeps the
place of the first one waiting on its topic), with up to :data:`WINDOW`
messages handed to the connection before the first is acknowledged. What was
not acknowledged when a connection is lost goes out again on the next one.
The counters are in the bridge's diagnostics (``outbox``).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog
from paho.mqtt.properties import Properties

if TYPE_CHECKING:
    from aiomqtt.types import PayloadType

    from gunctl.mqtt.client import Connection

log = structlog.get_logger("gunctl.mqtt")

ANSWERS_MAX = 1000  # answers waiting; past this the oldest is dropped
KEPT_WARN = 2000  # events and stop results waiting: past this, a warning (they are kept)
WINDOW = 20  # messages handed to the connection and not yet acknowledged (paho's default)

Entry = tuple[int, "Outgoing"]  # (the order it was put in, the message)


@dataclass(frozen=True)
class Outgoing:
    topic: str
    payload: PayloadType
    qos: int = 1
    retain: bool = False
    properties: Properties | None = None
    latest: bool = False  # only the newest on its topic matters (telemetry); retained ones too
    keep: bool = True  # never dropped; False for an answer that is not a stop's

    @property
    def coalesced(self) -> bool:
        return self.retain or self.latest


def as_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


class Outbox:
    def __init__(self) -> None:
        self._order = itertools.count()
        self._kept: deque[Entry] = deque()
        self._answers: deque[Entry] = deque()
        self._topics: deque[tuple[int, str]] = deque()  # latest-only topics, in order
        self._latest: dict[str, Outgoing] = {}
        self._wake = asyncio.Event()
        self._drained = asyncio.Event()  # set while nothing waits and nothing is in flight
        self._drained.set()
        self._warned = False
        self.coalesced = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self._kept) + len(self._answers) + len(self._latest)

    def stats(self) -> dict[str, int]:
        """For the bridge's diagnostics."""
        return {
            "waiting": len(self),
            "answers_max": ANSWERS_MAX,
            "coalesced": self.coalesced,
            "dropped": self.dropped,
        }

    def put(self, message: Outgoing) -> None:
        self._put((next(self._order), message))
        self._drained.clear()
        self._wake.set()

    def _put(self, entry: Entry, *, back: bool = False) -> None:
        """Queue ``entry`` at the end, or (``back``: not acknowledged) at the front."""
        order, message = entry
        if message.coalesced:
            if message.topic in self._latest:
                if not back:  # a newer one waits already: the old one is not wanted
                    self._latest[message.topic] = message
                    self.coalesced += 1
                return
            self._latest[message.topic] = message
            self._add(self._topics, (order, message.topic), back)
        elif message.keep:
            self._add(self._kept, entry, back)
            if len(self._kept) > KEPT_WARN and not self._warned:
                self._warned = True
                log.warning("outbox_backed_up", kept=len(self._kept), topic=message.topic)
        else:
            if len(self._answers) >= ANSWERS_MAX and not back:
                self._answers.popleft()
                self.dropped += 1
            self._add(self._answers, entry, back)

    @staticmethod
    def _add(queue: deque[Any], item: Any, back: bool) -> None:
        if back:
            queue.appendleft(item)
        else:
            queue.append(item)

    def _take(self) -> Entry | None:
        """The message put first among those waiting."""
        first: deque[Entry] | None = None
        for queue in (self._kept, self._answers):
            if queue and (first is None or queue[0][0] < first[0][0]):
                first = queue
        if self._topics and (first is None or self._topics[0][0] < first[0][0]):
            order, topic = self._topics.popleft()
            return order, self._latest.pop(topic)
        return first.popleft() if first is not None else None

    async def flushed(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far has gone to the broker."""
        async with asyncio.timeout(timeout):
            await self._drained.wait()

    async def send(self, connection: Connection) -> None:
        """Publish what is queued, in order, for as long as ``connection`` is up."""
        in_flight: deque[tuple[Entry, asyncio.Future[None]]] = deque()
        try:
            while True:
                while len(in_flight) < WINDOW and (entry := self._take()) is not None:
                    in_flight.append((entry, self._publish(connection, entry)))
                if in_flight:
                    await in_flight[0][1]
                    in_flight.popleft()
                    continue
                if len(self._kept) <= KEPT_WARN:
                    self._warned = False
                self._drained.set()
                self._wake.clear()
                await self._wake.wait()
        finally:
            for entry, done in reversed(in_flight):  # the next connection sends them again
                done.cancel()
                self._put(entry, back=True)

    def _publish(self, connection: Connection, entry: Entry) -> asyncio.Future[None]:
        _, message = entry
        try:
            return connection.publish(
                message.topic,
                message.payload,
                qos=message.qos,
                retain=message.retain,
                properties=message.properties,
            )
        except BaseException:
            self._put(entry, back=True)
            raise
