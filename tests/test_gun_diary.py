"""The diary from Python: ``Gun.score``, ``Gun.professional_seen`` and ``Gun.diary``.

A Gun that keeps a history (as ``gunctl.connect`` gives) on a simulated gun, so
the scores are the simulator's diary, in loop time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

import gunctl
from gunctl.clock import Clock
from gunctl.devices import connect_sim
from gunctl.gun import Gun
from gunctl.profiles.loader import load_catalogue
from gunctl.store.history import History

pytestmark = pytest.mark.looptime(noop_cycles=1)


@contextlib.asynccontextmanager
async def keeping(tmp_path: Path) -> AsyncIterator[Gun]:
    """A Gun with a history, opened inside the test: its Supervisor runs in loop time."""
    history = History(tmp_path / "history.sqlite3")
    catalogue = load_catalogue()  # before a Supervisor runs: the loop is not watched yet
    device = await connect_sim(
        "gunctl-open",
        clock=Clock(),
        device_id="sim-diary",
        exposure=history.exposure(simulated=True),
    )
    async with Gun(device, catalogue, history=history, fits_heads=True) as gun:
        yield gun


async def test_a_severe_score_refuses_the_start_until_a_visit_is_recorded(tmp_path: Path) -> None:
    async with keeping(tmp_path) as gun:
        summary = await gun.score("before", 9, "foot")
        assert isinstance(summary, gunctl.DiarySummary)
        assert summary.refusal is not None
        assert summary.refusal.rule == "pain_severe"
        with pytest.raises(gunctl.RequestRefusedError, match=r"^pain_severe: pain 9/10") as refused:
            await gun.start("glute", side="left")
        assert refused.value.reason == "pain_severe"
        assert (await gun.professional_seen("GP")).refusal is None
        visit = History(tmp_path / "history.sqlite3").last_professional(simulated=True)
        assert visit is not None
        assert visit.source == "python"

        await gun.score("before", 3, "thigh")
        assert isinstance(await gun.run("glute", side="left"), gunctl.SessionCompleted)
        summary = await gun.score("after", 2)
        assert summary.last_after is not None
        assert summary.last_after.pain == 2
        assert summary.last_after.session_id == summary.last_before.session_id  # type: ignore[union-attr]
        assert summary.sessions_this_week == 1
        assert summary.minutes_this_week > 0


async def test_an_after_score_needs_a_session_and_a_simulation_keeps_no_diary(
    tmp_path: Path,
) -> None:
    async with keeping(tmp_path) as gun:
        with pytest.raises(gunctl.RequestRefusedError, match="no session to score after"):
            await gun.score("after", 4)
    async with gunctl.simulate("gunctl-open") as bare:
        with pytest.raises(gunctl.GunctlError, match="keeps no history, so no diary"):
            await bare.score("before", 4)
