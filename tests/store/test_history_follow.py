"""Recording a session as it runs, from the event bus."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest
from store_events import DEVICE, step

from gunctl.control.events import (
    Cue,
    EventBus,
    SessionAborted,
    SessionStarted,
    StepCompleted,
)
from gunctl.store.history import History, follow


def _completed(at: float, muscle: str, worked: float, device: str = DEVICE) -> StepCompleted:
    return StepCompleted(
        at=at, device=device, step_index=0, muscle=muscle, side="left", worked_s=worked
    )


async def test_follow_records_until_the_session_ends(history: History) -> None:
    bus = EventBus()
    sid = history.begin(device=DEVICE, protocol="glute")
    task = asyncio.create_task(follow(history, bus.subscribe(), sid))
    bus.publish(SessionStarted(at=0.0, device=DEVICE, protocol="glute", steps=2, planned_s=120))
    bus.publish(step(0, "gluteus_maximus", at=0.0))
    bus.publish(_completed(50.0, "gluteus_maximus", 48.0))
    bus.publish(_completed(50.0, "piriformis", 99.0, device="another-gun"))  # not this session
    bus.publish(step(1, "gluteus_medius", at=50.0))
    bus.publish(
        SessionAborted(at=60.0, device=DEVICE, reason="stopped", message="Ctrl-C", worked_s=57.0)
    )
    bus.publish(Cue(at=61.0, device=DEVICE, message="after the end", step_index=1))

    record = await asyncio.wait_for(task, 5)
    assert record is not None
    assert (record.status, record.end_reason, record.end_message) == (
        "aborted",
        "stopped",
        "Ctrl-C",
    )
    times = {(m.muscle, m.side): m.worked_s for m in record.muscles}
    assert times == {("gluteus_maximus", "left"): 48.0, ("gluteus_medius", "left"): 9.0}
    assert not bus._subscribers  # follow let go of its subscription


async def test_follow_closes_the_session_when_the_events_stop(history: History) -> None:
    bus = EventBus()
    sid = history.begin(device=DEVICE, protocol="glute")
    task = asyncio.create_task(follow(history, bus.subscribe(), sid))
    bus.publish(step(0, "gluteus_maximus", at=0.0))
    bus.publish(Cue(at=20.0, device=DEVICE, message="-", step_index=0))
    bus.close()
    record = await asyncio.wait_for(task, 5)
    assert record is not None
    assert (record.status, record.end_reason) == ("aborted", "interrupted")
    assert record.worked_s == 20.0


async def test_follow_cancelled_closes_the_session(history: History) -> None:
    bus = EventBus()
    sid = history.begin(device=DEVICE, protocol="glute")
    task = asyncio.create_task(follow(history, bus.subscribe(), sid))
    bus.publish(step(0, "gluteus_maximus", at=0.0))
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    record = history.session(sid)
    assert record is not None
    assert record.end_reason == "interrupted"


async def test_follow_checkpoints_the_exact_counters(history: History) -> None:
    bus = EventBus()
    sid = history.begin(device=DEVICE, protocol="glute")
    worked = {("gluteus_maximus", "left"): 0.0}
    task = asyncio.create_task(
        follow(history, bus.subscribe(), sid, progress=lambda: worked, every_s=0.01)
    )
    bus.publish(step(0, "gluteus_maximus", at=0.0))
    worked[("gluteus_maximus", "left")] = 7.5  # the motor ran; no event says so yet
    for _ in range(200):
        await asyncio.sleep(0.01)
        record = history.session(sid)
        assert record is not None
        if record.worked_s == pytest.approx(7.5 + 0.01):  # one checkpoint ahead: errs high
            break
    else:
        pytest.fail("the checkpoint never reached the store")
    bus.close()
    await asyncio.wait_for(task, 5)


async def test_a_failed_write_does_not_stop_the_following(
    history: History, monkeypatch: pytest.MonkeyPatch
) -> None:
    bus = EventBus()
    sid = history.begin(device=DEVICE, protocol="glute")
    real = history.record
    failures = [sqlite3.OperationalError("disk I/O error")]

    def flaky(*args: object) -> None:
        if failures:
            raise failures.pop()
        real(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(history, "record", flaky)
    task = asyncio.create_task(follow(history, bus.subscribe(), sid))
    bus.publish(step(0, "gluteus_maximus", at=0.0))  # lost to the failure
    bus.publish(_completed(30.0, "gluteus_maximus", 28.0))
    bus.publish(
        SessionAborted(at=31.0, device=DEVICE, reason="pain", message="sharp", worked_s=28.0)
    )
    record = await asyncio.wait_for(task, 5)
    assert record is not None
    assert record.status == "aborted"
    assert record.worked_s == 28.0
