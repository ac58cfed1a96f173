"""``gunctl history``: what a person reads, what a script parses, what a spreadsheet opens."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gunctl.cli.app import cli
from gunctl.cli.history import parse_since
from gunctl.control.events import SafetyStop, SessionAborted, SessionCompleted, StepCompleted
from gunctl.store.history import History

NOW = datetime.now(UTC)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("GUNCTL_DATA_DIR", str(tmp_path))
    return tmp_path


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["history", *args])


def _seed(data_dir: Path) -> None:
    with History(data_dir / "history.sqlite3") as store:
        store.begin(
            device="gun-1", protocol="glute", planned_s=300, started_at=NOW - timedelta(days=3)
        )
        for muscle, side, worked in [
            ("gluteus_maximus", "left", 90.0),
            ("gluteus_maximus", "right", 85.0),
        ]:
            store.record(
                StepCompleted(
                    at=1.0, device="gun-1", step_index=0, muscle=muscle, side=side, worked_s=worked
                )
            )
        store.record(SessionCompleted(at=200.0, device="gun-1", worked_s=175.0))

        store.begin(
            device="gun-2",
            protocol="piriformis",
            source="mqtt",
            started_at=NOW - timedelta(hours=2),
        )
        store.record(
            StepCompleted(
                at=1.0, device="gun-2", step_index=0, muscle="piriformis", side="left", worked_s=40
            )
        )
        store.record(
            SafetyStop(
                at=41.0,
                device="gun-2",
                rule="temperature",
                message="the motor is too hot",
                values={"temp_c": 71},
                step_index=1,
            )
        )
        store.record(
            SessionAborted(
                at=41.0,
                device="gun-2",
                reason="temperature",
                message="the motor is too hot",
                worked_s=40.0,
            )
        )


def test_an_empty_history_says_so(data_dir: Path) -> None:
    result = run()
    assert result.exit_code == 0, result.output
    assert "No sessions yet" in result.output
    assert not (data_dir / "history.sqlite3").exists()  # looking creates nothing
    result = run("--json")
    assert json.loads(result.output) == []


def test_the_list_reads_well(data_dir: Path) -> None:
    _seed(data_dir)
    result = run()
    assert result.exit_code == 0, result.output
    out = " ".join(result.output.split())  # column widths vary with the content
    for text in [
        "glute",
        "piriformis",
        "gun-1",
        "completed",
        "aborted: temperature",
        "the motor is too hot",
        "glute on gun-1: completed, 2 min 55 s worked (5 min planned, with ramps and rests)",
        "gluteus_maximus left 1 min 30 s",
        "gluteus_maximus right 1 min 25 s",
        "piriformis left 40 s",
        "piriformis on gun-2 from mqtt: aborted: temperature",
        "stopped by temperature the motor is too hot",
        "2 sessions, 3 min 35 s of massage in all.",
    ]:
        assert text in out, text


def test_simulated_sessions_are_marked_and_can_be_left_out_or_kept_alone(data_dir: Path) -> None:
    _seed(data_dir)
    with History(data_dir / "history.sqlite3") as store:
        store.begin(device="sim-1", protocol="hamstrings", simulated=True, time_scale=10)
        store.record(SessionCompleted(at=60.0, device="sim-1", worked_s=60.0))
    out = " ".join(run().output.split())
    assert "[sim 10x] hamstrings on sim-1: completed" in out
    assert "2 sessions, 3 min 35 s; 1 simulated session, 1 min of massage in all." in out
    real = run("--real", "--json")
    assert [s["protocol"] for s in json.loads(real.output)] == ["glute", "piriformis"]
    sim = json.loads(run("--sim", "--json").output)
    assert [(s["protocol"], s["simulated"], s["time_scale"]) for s in sim] == [
        ("hamstrings", True, 10.0)
    ]
    rows = list(csv.DictReader(io.StringIO(run("export", "--sim").stdout)))
    assert [(r["protocol"], r["simulated"]) for r in rows] == [("hamstrings", "1")]


def test_json_parses_and_carries_everything(data_dir: Path) -> None:
    _seed(data_dir)
    result = run("--json")
    assert result.exit_code == 0, result.output
    sessions = json.loads(result.output)
    assert [s["protocol"] for s in sessions] == ["glute", "piriformis"]
    aborted = sessions[1]
    assert aborted["status"] == "aborted"
    assert aborted["end_reason"] == "temperature"
    assert aborted["source"] == "mqtt"
    assert aborted["muscles"] == [{"muscle": "piriformis", "side": "left", "worked_s": 40.0}]
    assert aborted["safety_stops"][0]["values"] == {"temp_c": 71}
    datetime.fromisoformat(aborted["started_at"])


@pytest.mark.parametrize(
    "since",
    [
        "1d",
        "24h",
        (NOW - timedelta(hours=5)).isoformat(),
        (NOW - timedelta(days=1)).astimezone().date().isoformat(),
    ],
)
def test_since_filters(data_dir: Path, since: str) -> None:
    _seed(data_dir)
    result = run("--since", since, "--json")
    assert result.exit_code == 0, result.output
    assert [s["protocol"] for s in json.loads(result.output)] == ["piriformis"]


def test_since_with_nothing_after_it(data_dir: Path) -> None:
    _seed(data_dir)
    result = run("--since", "30m")
    assert result.exit_code == 0, result.output
    assert "No sessions since" in result.output


@pytest.mark.parametrize("since", ["yesterday", "2025-13-01", "5 parsecs", ""])
def test_a_bad_since_is_a_usage_error(data_dir: Path, since: str) -> None:
    result = run("--since", since)
    assert result.exit_code == 2
    assert "--since" in result.output
    assert "is not a date" in result.output


def test_parse_since() -> None:
    now = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)
    assert parse_since("48h", now) == now - timedelta(hours=48)
    assert parse_since("1.5d", now) == now - timedelta(hours=36)
    assert parse_since("2w", now) == now - timedelta(weeks=2)
    assert parse_since("2025-03-01T08:00+00:00") == datetime(2025, 3, 1, 8, tzinfo=UTC)
    assert parse_since("2025-03-01").tzinfo is not None  # local midnight


def test_export_csv_to_stdout_and_to_a_file(data_dir: Path, tmp_path: Path) -> None:
    _seed(data_dir)
    result = run("export", "--csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["protocol"], r["muscle"], r["side"]) for r in rows] == [
        ("glute", "gluteus_maximus", "left"),
        ("glute", "gluteus_maximus", "right"),
        ("piriformis", "piriformis", "left"),
    ]
    assert rows[2]["end_reason"] == "temperature"
    assert rows[2]["safety_stops"] == "1"

    target = tmp_path / "out.csv"
    result = run("export", "--output", str(target), "--since", "1d")
    assert result.exit_code == 0, result.output
    assert "Wrote 1 row" in result.output
    rows = list(csv.DictReader(target.open(newline="")))
    assert [r["protocol"] for r in rows] == ["piriformis"]


def test_export_of_an_empty_history_is_a_header(data_dir: Path) -> None:
    result = run("export")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("session_id,started_at,")
    assert len(result.stdout.splitlines()) == 1


def test_history_is_listed_in_the_help() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert "history" in result.output
