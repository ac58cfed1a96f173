"""The gunsim command line."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from gunsim.cli import main, parse_fault
from gunsim.faults import Silence


def test_run_prints_telemetry_as_json() -> None:
    result = CliRunner().invoke(
        main, ["run", "gunctl-open", "--seconds", "2", "--scale", "50", "--json", "--speed", "2000"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    assert len(lines) == 2
    assert lines[-1]["reported"]["running"] is True
    assert lines[-1]["reported"]["speed_ppm"] == pytest.approx(2000, rel=0.01)


def test_an_unknown_spec_is_a_usage_error() -> None:
    result = CliRunner().invoke(main, ["run", "no-such-gun"])
    assert result.exit_code == 2
    assert "no firmware spec named" in result.output


def test_faults_are_written_at_kind_and_values() -> None:
    assert parse_fault("5:silence:duration_s=2") == (5.0, Silence(duration_s=2.0))
    with pytest.raises(click.BadParameter):
        parse_fault("5:no_such_fault")
