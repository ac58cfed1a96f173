"""The 48-hour caps hold however many sessions run at once, on one machine.

Every session books its plan's time on each muscle side in the exposure
ledger (SQLite, beside the history) before its motor turns, and a start that
would take a side past its cap is refused whole. Three CLI runs are three
processes, each with a History of its own on one file; the guns of a daemon
share one History. Both are played here with Supervisors on simulated guns.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import pytest

from gunctl.control.supervisor import RequestRefusedError
from gunctl.store.history import History, follow

from rig import Rig, plan_for

pytestmark = pytest.mark.looptime(noop_cycles=1)

SIDE = ("hamstrings", "left")


async def run_one(rig: Rig, history: History) -> float | None:
    """A session as ``gunctl run`` records it; the seconds it worked the side, None if refused."""
    plan = plan_for("hamstrings", "gunctl-open", side="left")
    sup = rig.supervisor
    session_id = await asyncio.to_thread(
        history.begin, device=sup.device_id, protocol=plan.protocol, side="left"
    )
    recorder = asyncio.create_task(follow(history, sup.bus.subscribe(), session_id))
    try:
        await rig.start(plan)
    except RequestRefusedError as exc:
        refused = str(exc)
        recorder.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recorder
        assert refused.startswith("exposure_48h")
        return None
    end = await rig.finish(timeout=600)
    assert end.type == "session_completed"
    await recorder
    assert sup.session is not None
    return sup.session.worked.get(SIDE, 0.0)


@pytest.mark.parametrize("sharing", ["three processes", "one daemon"])
async def test_three_sessions_at_once_never_pass_the_cap(
    rig_factory, tmp_path: Path, sharing: str
) -> None:
    path = tmp_path / "history.sqlite3"
    shared = History(path)
    histories = [History(path) for _ in range(3)] if sharing == "three processes" else [shared] * 3
    exposures = [h.exposure(simulated=False) for h in histories]
    rigs = [
        await rig_factory("gunctl-open", device_id=f"gun-{i}", exposure=exposures[i])
        for i in range(3)
    ]
    worked = await asyncio.gather(*(run_one(r, h) for r, h in zip(rigs, histories, strict=True)))
    cap = plan_for("hamstrings", "gunctl-open", side="left").steps[0].per_48h_s_max
    assert worked.count(None) == 1  # the third would have passed the cap: refused whole
    assert sum(w for w in worked if w is not None) <= cap
    assert shared.exposure_s(*SIDE) <= cap
    # and a fourth, once the others are done, is refused on what they recorded
    fourth = await rig_factory("gunctl-open", device_id="gun-3", exposure=exposures[0])
    assert await run_one(fourth, histories[0]) is None
    assert not any(c.command.kind == "set_speed" for c in fourth.device.commands)
    for history in {*histories, shared}:
        history.close()
