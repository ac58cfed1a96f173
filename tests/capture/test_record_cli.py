"""``gunsim record`` as a person runs it: a capture, or one clear line."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from gunctl.capture import Capture
from gunsim.cli import main

from capturehost import DATA


def test_records_a_made_up_family_from_its_file(tmp_path: Path) -> None:
    output = tmp_path / "twin.log"
    spec = DATA / "specs" / "modbus-twin.yaml"
    result = CliRunner().invoke(main, ["record", str(spec), "--output", str(output), "--btmon"])
    assert result.exit_code == 0, result.output
    assert "modbus-twin" in result.output
    assert sum(1 for _ in Capture(output).records()) > 100


def test_an_unknown_family_is_a_usage_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(main, ["record", "hypervolt", "-o", str(tmp_path / "x.log")])
    assert result.exit_code == 2
    assert "no firmware spec named 'hypervolt'" in result.output


def test_an_unwritable_output_is_one_line(tmp_path: Path) -> None:
    output = tmp_path / "missing" / "x.log"
    result = CliRunner().invoke(main, ["record", "basic-5level", "-o", str(output)])
    assert result.exit_code == 1
    assert result.output.strip() == f"Error: cannot write {output}: No such file or directory"
