"""Session events, and a bus that hands them to any number of subscribers.

The CLI display, the MQTT bridge and the history store all follow a session
through these events. Publishing never blocks the control loop: each
subscriber has a bounded buffer, and a subscriber that falls behind loses its
oldest events (and is told how many) rather than slowing the loop down.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal, get_args

from pydantic import Field, TypeAdapter

from gunctl.datafile import DataModel


class _Event(DataModel):
    at: float  # session clock seconds
    device: str


class StepInfo(DataModel):
    index: int  # 0-based position in the plan
    muscle: str
    side: Literal["left", "right"]
    head: str
    hold_s: float
    ppm: int
    level: int | None = None
    placement: str
    force_cap_n: float | None = None  # the muscle's cap on pressing force, where it has one


class SessionStarted(_Event):
    type: Literal["session_started"] = "session_started"
    protocol: str
    steps: int
    planned_s: float


class StepStarted(_Event):
    type: Literal["step_started"] = "step_started"
    step: StepInfo


class HeadChangeRequired(_Event):
    type: Literal["head_change_required"] = "head_change_required"
    step: StepInfo
    previous_head: str | None


class Cue(_Event):
    type: Literal["cue"] = "cue"
    message: str
    step_index: int


class SafetyWarning(_Event):
    type: Literal["warning"] = "warning"
    rule: str
    message: str
    values: dict[str, Any]


class Paused(_Event):
    type: Literal["paused"] = "paused"
    reason: str


class Resumed(_Event):
    type: Literal["resumed"] = "resumed"


class PainReported(_Event):
    """Sharp or shooting pain: the motor is stopped and the muscle is done for the session."""

    type: Literal["pain_reported"] = "pain_reported"
    step_index: int
    muscle: str
    side: str


class SafetyStop(_Event):
    type: Literal["safety_stop"] = "safety_stop"
    rule: str
    message: str
    values: dict[str, Any]
    step_index: int | None


class StepCompleted(_Event):
    type: Literal["step_completed"] = "step_completed"
    step_index: int
    muscle: str
    side: str
    worked_s: float  # seconds the motor ran on this step
    skipped: bool = False


class SessionCompleted(_Event):
    type: Literal["session_completed"] = "session_completed"
    worked_s: float


class SessionAborted(_Event):
    type: Literal["session_aborted"] = "session_aborted"
    reason: str  # the rule, "pain", "stopped", "link_lost", ...
    message: str
    worked_s: float


Event = Annotated[
    SessionStarted
    | StepStarted
    | HeadChangeRequired
    | Cue
    | SafetyWarning
    | Paused
    | Resumed
    | PainReported
    | SafetyStop
    | StepCompleted
    | SessionCompleted
    | SessionAborted,
    Field(discriminator="type"),
]
EVENT_ADAPTER: TypeAdapter[Event] = TypeAdapter(Event)
EVENT_TYPES: tuple[str, ...] = tuple(
    kind.model_fields["type"].default for kind in get_args(get_args(Event)[0])
)
ENDING_EVENTS = (SessionCompleted, SessionAborted)


class Subscription:
    """One subscriber's view of the bus: iterate it to receive events in order."""

    def __init__(self, bus: EventBus, maxlen: int) -> None:
        self._bus = weakref.ref(bus)  # the bus holds its subscriptions: no cycle back to it
        self._buffer: deque[Event] = deque(maxlen=maxlen)
        self._ready = asyncio.Event()
        self._closed = False
        self.dropped = 0  # events lost because this subscriber fell behind

    def _push(self, event: Event) -> None:
        if len(self._buffer) == self._buffer.maxlen:
            self.dropped += 1
        self._buffer.append(event)
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()
        bus = self._bus()
        if bus is not None:
            bus._subscribers.discard(self)

    def pending(self) -> list[Event]:
        """Everything buffered now, without waiting."""
        events = list(self._buffer)
        self._buffer.clear()
        return events

    def __aiter__(self) -> AsyncIterator[Event]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Event]:
        while True:
            while self._buffer:
                yield self._buffer.popleft()
            if self._closed:
                return
            self._ready.clear()
            await self._ready.wait()


class EventBus:
    def __init__(self) -> None:
        self._subscribers: set[Subscription] = set()

    def subscribe(self, maxlen: int = 1024) -> Subscription:
        subscription = Subscription(self, maxlen)
        self._subscribers.add(subscription)
        return subscription

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every subscriber; never blocks and never raises."""
        for subscription in list(self._subscribers):
            subscription._push(event)

    def close(self) -> None:
        """End every subscription once it has drained what it holds."""
        for subscription in list(self._subscribers):
            subscription.close()
