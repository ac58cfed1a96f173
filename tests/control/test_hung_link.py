"""A link that takes frames but never acknowledges them: bounded, a safety stop, and dropped;
a stop the spec lets go without response, and one lost on the way.

theragun-gen4 asks for its status with a write that needs a response, and has
no keepalive watchdog: if the Supervisor waited on that write for as long as
the link hangs, no rule on time would run and nothing would stop the motor.
"""

from __future__ import annotations

import asyncio

import pytest

from gunctl.control.driver import ACK_WITHIN_S
from gunctl.errors import RequestRefusedError
from gunctl.specs.messages import Stop
from gunsim import LoseWrites, SlowAcks

from rig import plan_for

pytestmark = pytest.mark.looptime(noop_cycles=1)

HANG_S = 600.0  # far longer than any bound: the acknowledgement never comes in the test


async def test_a_write_that_hangs_is_a_safety_stop_within_the_bound(rig_factory) -> None:
    rig = await rig_factory("theragun-gen4")
    await rig.start(plan_for("glute", "theragun-gen4"))
    await rig.until("step_started", since=0)
    await asyncio.sleep(5)
    assert rig.device.state.running
    hung_at = rig.clock.now()
    rig.device.faults.inject(SlowAcks(delay_s=HANG_S))
    end = await rig.finish(timeout=4 * ACK_WITHIN_S)
    assert end.reason == "write_unanswered"
    stop = next(c for c in rig.device.commands if c.at > hung_at and c.command == Stop())
    assert stop.at - hung_at <= 2 * ACK_WITHIN_S  # one poll's bound, then the stop
    await rig.settle(2.0)
    assert not rig.device.state.running
    assert not rig.link.connected  # dropped: a hung link carries no further stop
    assert rig.supervisor.ended == "dropped: writes unanswered"


async def test_a_stop_does_not_queue_behind_a_write_still_unanswered(rig_factory) -> None:
    rig = await rig_factory("theragun-gen4")  # its stop needs a response
    await rig.start(plan_for("glute", "theragun-gen4"))
    await rig.until("step_started", since=0)
    await asyncio.sleep(5)
    rig.device.faults.inject(SlowAcks(delay_s=HANG_S))
    await asyncio.sleep(0.1)  # a status request is now waiting for its acknowledgement
    asked = rig.clock.now()
    with pytest.raises(RequestRefusedError, match="did not acknowledge"):
        async with asyncio.timeout(2 * ACK_WITHIN_S):
            await rig.send("stop")
    stop = next(c for c in rig.device.commands if c.at >= asked and c.command == Stop())
    assert stop.at == asked  # written at once, beside the write still waiting
    assert rig.clock.now() - asked <= 1.5 * ACK_WITHIN_S
    end = await rig.finish(timeout=2 * ACK_WITHIN_S)
    assert end.reason == "write_unanswered"


async def test_a_stop_the_spec_lets_go_without_response_waits_for_no_acknowledgement(
    rig_factory,
) -> None:
    rig = await rig_factory("gunctl-open")  # its stop: response_optional
    await rig.start(plan_for("glute", "gunctl-open"))
    await rig.until("step_started", since=0)
    await asyncio.sleep(5)
    rig.device.faults.inject(SlowAcks(delay_s=HANG_S))  # no acknowledgement ever comes back
    asked = rig.clock.now()
    await rig.send("stop")  # returns: nothing to wait for
    assert rig.clock.now() == asked
    end = await rig.finish(timeout=1)
    assert end.reason == "stopped"


async def test_a_stop_lost_on_the_way_is_written_again_until_telemetry_shows_it_taken(
    rig_factory,
) -> None:
    rig = await rig_factory("gunctl-open")
    await rig.start(plan_for("glute", "gunctl-open"))
    await rig.until("step_started", since=0)
    await asyncio.sleep(5.01)
    rig.device.faults.inject(LoseWrites(count=2))  # the stop, and the first one again
    asked = rig.clock.now()
    await rig.send("stop")
    await asyncio.sleep(0.2)
    taken = [c.at for c in rig.device.commands if c.at >= asked and c.command == Stop()]
    assert taken, "the stop never reached the gun"
    # two status frames (25 Hz) reported it running; the third stop was taken, well
    # before the next keepalive (every 0.2 s), which would also have carried a stop
    assert taken[0] - asked <= 3 / 25 + 0.001
    assert not rig.device.state.running or rig.device.state.speed_ppm < 2000
