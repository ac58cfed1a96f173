"""The public face: a simulated gun driven through ``gunctl`` alone, in loop time."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import gunctl
from gunctl.cli.app import cli
from gunctl.store.history import History
from gunsim import DropLink, Overheat

pytestmark = pytest.mark.looptime(noop_cycles=1)


async def test_run_plays_a_protocol_to_its_end_and_the_state_says_so() -> None:
    async with gunctl.simulate("gunctl-open") as gun:
        assert gun.state().phase == "idle"
        outcome = await gun.run("glute", side="left")
        assert isinstance(outcome, gunctl.SessionCompleted)
        state = gun.state()
        assert (state.phase, state.running, state.motor_running) == ("done", False, False)
        assert state.version == 1


async def test_events_and_state_follow_the_session_as_it_runs() -> None:
    async with gunctl.simulate("gunctl-open") as gun:
        seen: list[str] = []
        states: list[gunctl.GunState] = []

        async def watch() -> None:
            async for event in gun.events():
                seen.append(event.type)
                if event.type == "step_started":
                    await asyncio.sleep(5)
                    states.append(gun.state())
                if isinstance(event, gunctl.SessionCompleted | gunctl.SessionAborted):
                    return

        watcher = asyncio.create_task(watch())
        await gun.run("glute", side="left")
        await watcher
        assert seen[:3] == ["session_started", "head_change_required", "step_started"]
        running = states[0]
        assert running.phase == "running"
        assert running.motor_running
        assert running.step is not None
        assert running.step.side == "left"
        assert running.protocol == "glute"


async def test_a_stop_ends_the_session_as_an_outcome_not_an_error() -> None:
    async with gunctl.simulate("gunctl-open") as gun:
        run = asyncio.create_task(gun.run("glute", side="left"))
        await asyncio.sleep(20)
        await gun.stop()
        outcome = await run
        assert isinstance(outcome, gunctl.SessionAborted)
        assert outcome.reason == "stopped"
        assert gun.state().setpoint_ppm == 0  # the stop frame went out at once
        await asyncio.sleep(3)  # and the motor spins down
        assert not gun.state().motor_running


async def test_pause_and_resume_through_the_facade() -> None:
    async with gunctl.simulate("gunctl-open") as gun:
        run = asyncio.create_task(gun.run("glute", side="left"))
        await asyncio.sleep(20)
        await gun.pause()
        await asyncio.sleep(2)
        assert (gun.state().phase, gun.state().setpoint_ppm) == ("paused", 0)
        await gun.resume()
        assert isinstance(await run, gunctl.SessionCompleted)


async def test_a_safety_stop_is_raised_with_its_rule_and_nothing_resumes() -> None:
    async with gunctl.simulate("gunctl-open", faults=[(20.0, Overheat(temperature_c=75))]) as gun:
        with pytest.raises(gunctl.SafetyStopError) as caught:
            await gun.run("glute", side="left")
        assert caught.value.rule == "temperature"
        assert caught.value.reason == "safety_stop"
        await asyncio.sleep(10)
        state = gun.state()
        assert (state.phase, state.motor_running) == ("safety_stop", False)
        assert state.last_safety_stop is not None  # the latest: the device's own flag follows


async def test_a_lost_link_is_raised_as_link_lost() -> None:
    async with gunctl.simulate("gunctl-open", faults=[(20.0, DropLink())]) as gun:
        with pytest.raises(gunctl.LinkLostError) as caught:
            await gun.run("glute", side="left")
        assert caught.value.reason == "link_lost"
        assert not gun.state().connected


async def test_a_refused_request_and_an_unknown_protocol_are_errors_a_user_catches() -> None:
    async with gunctl.simulate("gunctl-open") as gun:
        with pytest.raises(gunctl.RequestRefusedError) as refused:
            await gun.pause()
        assert refused.value.reason == "no_session"
        with pytest.raises(gunctl.UnknownNameError, match="no protocol named 'glutes'"):
            await gun.run("glutes")


@pytest.mark.parametrize(
    ("argument", "value"),
    [
        ("intensity_cap", True),  # a bool is an int in Python; it must not read as a cap of 1
        ("intensity_cap", "0.25"),
        ("intensity_cap", 0.0),
        ("intensity_cap", float("nan")),
        ("side", "up"),
    ],
)
async def test_a_start_with_a_wrong_argument_is_refused_before_the_motor_turns(
    argument: str, value: object
) -> None:
    async with gunctl.simulate("gunctl-open") as gun:
        with pytest.raises(gunctl.RequestRefusedError, match=argument.replace("_", " ")):
            await gun.start("glute", **{argument: value})  # type: ignore[arg-type]
        state = gun.state()
        assert (state.phase, state.motor_running) == ("idle", False)


async def test_a_session_run_from_python_is_in_the_history_as_python(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUNCTL_DATA_DIR", str(tmp_path))
    history = History(tmp_path / "history.sqlite3")
    async with gunctl.simulate("gunctl-open", time_scale=10, history=history) as gun:
        await gun.run("glute", side="left")

    listing = CliRunner().invoke(cli, ["history", "--json"])
    (session,) = json.loads(listing.output)
    assert (session["source"], session["status"], session["protocol"]) == (
        "python",
        "completed",
        "glute",
    )
    assert (session["simulated"], session["time_scale"]) == (True, 10.0)  # never a person's time
    assert session["worked_s"] > 0
    words = " ".join(CliRunner().invoke(cli, ["history"]).output.split())
    assert "glute on sim-gunctl-open-0 from python: completed" in words
    rows = csv.DictReader(io.StringIO(CliRunner().invoke(cli, ["history", "export"]).output))
    assert {row["source"] for row in rows} == {"python"}


def test_every_public_name_resolves_and_nothing_else_is_offered() -> None:
    for name in gunctl.__all__:
        assert getattr(gunctl, name) is not None
    with pytest.raises(AttributeError):
        _ = gunctl.Supervisor  # type: ignore[attr-defined]
