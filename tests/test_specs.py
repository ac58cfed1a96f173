"""Spec files: the shipped ones load, broken ones name the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from gunctl.cli.app import cli
from gunctl.datafile import InvalidFileError
from gunctl.specs.loader import load_spec, load_specs
from gunctl.specs.matching import Advertisement, MatchKind, match

BROKEN = Path(__file__).parent / "data" / "specs_broken"
SPECS = load_specs()


def problems_of(name: str) -> list[str]:
    with pytest.raises(InvalidFileError) as err:
        load_spec(BROKEN / name)
    return [str(p) for p in err.value.problems]


def test_three_families_ship_and_validate() -> None:
    assert set(SPECS) == {"theragun-gen4", "gunctl-open", "basic-5level"}
    assert all(spec.vectors for spec in SPECS.values())


def test_theragun_trusts_only_the_public_fields() -> None:
    assert SPECS["theragun-gen4"].documented_fields == {"running", "speed_ppm"}


def test_gunctl_open_reports_everything_a_controller_watches() -> None:
    spec = SPECS["gunctl-open"]
    assert spec.documented_fields >= {
        "seq",
        "running",
        "speed_ppm",
        "current_a",
        "force_n",
        "temperature_c",
        "battery_pct",
        "head",
        "faults",
    }
    assert spec.capabilities.telemetry.period_s <= 0.05  # 20 Hz or more
    assert spec.capabilities.keepalive.strategy == "fixed"
    assert spec.frame.checksum is not None
    assert spec.frame.checksum.kind == "crc16-ccitt"


def test_budget_family_is_discrete_with_battery_service() -> None:
    spec = SPECS["basic-5level"]
    assert spec.capabilities.levels_ppm is not None
    assert len(spec.capabilities.levels_ppm) == 5
    assert spec.capabilities.keepalive.strategy == "repeat_last"
    assert spec.gatt.battery is not None
    assert spec.gatt.battery.characteristic.startswith("00002a19")
    assert "force_n" not in spec.documented_fields


def test_yaml_syntax_error_names_file_and_line() -> None:
    (problem,) = problems_of("bad-yaml.yaml")
    assert problem.startswith(f"{BROKEN / 'bad-yaml.yaml'}:5: (yaml):")


def test_wrong_type_names_line_and_field() -> None:
    (problem,) = problems_of("wrong-type.yaml")
    assert ":12: commands.set_speed.opcode: " in problem


def test_golden_vector_that_disagrees_is_caught_both_ways() -> None:
    problems = problems_of("bad-vector.yaml")
    assert len(problems) == 2
    assert ":26: vectors[1].hex: the message encodes to AA DE 01 03 07 D0 03" in problems[0]
    assert ":27: vectors[2].hex: bad_checksum" in problems[1]


def test_a_field_too_narrow_for_the_speed_range_is_refused_at_load_not_mid_session() -> None:
    # 1750 ppm at 10 ppm a step is 175, one byte; 3000 is 300, which a u8 cannot hold
    (problem,) = problems_of("narrow-field.yaml")
    assert ":13: commands.set_speed.fields: cannot carry set_speed ppm=3000, which the " in problem
    assert problem.endswith("ppm=300 does not fit in u8")


def test_every_problem_in_a_file_is_reported() -> None:
    problems = problems_of("many-problems.yaml")
    assert any(":20: reports.status.fields[1].type: " in p for p in problems)
    # field-name checks need a schema-valid file, so a second pass shows them once the type is fixed
    text = (BROKEN / "many-problems.yaml").read_text().replace("u9", "u8")
    fixed = BROKEN.parent / "tmp-many-problems.yaml"
    try:
        fixed.write_text(text)
        with pytest.raises(InvalidFileError) as err:
            load_spec(fixed)
    finally:
        fixed.unlink()
    found = [str(p) for p in err.value.problems]
    assert any(
        ":13: commands.set_speed.fields[0].name: set_speed has no field 'rpm'" in p for p in found
    )
    assert any("did you mean 'temperature_c'?" in p for p in found)
    assert any("must match the file name" in p for p in found)


def test_matching_order() -> None:
    specs = SPECS.values()
    assert match(Advertisement("Pro"), specs).kind is MatchKind.EXACT_NAME
    found = match(Advertisement("gunctl-kitchen"), specs)
    assert found.spec.name == "gunctl-open"
    assert found.kind is MatchKind.WILDCARD_NAME
    found = match(Advertisement(None, manufacturer_data={0xFFFF: b"MG\x01"}), specs)
    assert found.spec.name == "basic-5level"
    assert found.kind is MatchKind.MANUFACTURER_DATA
    found = match(
        Advertisement("Unnamed", services=("0000FFE0-0000-1000-8000-00805F9B34FB",)), specs
    )
    assert found.spec.name == "theragun-gen4"
    assert found.kind is MatchKind.SERVICE
    assert match(Advertisement("Toothbrush"), specs) is None


# -- the CLI ------------------------------------------------------------------


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_cli_validate_shipped_ok() -> None:
    result = run("specs", "validate")
    assert result.exit_code == 0
    assert result.output.count(": ok") == 3


def test_cli_validate_broken_exits_2_with_every_problem() -> None:
    result = run(
        "specs", "validate", str(BROKEN / "bad-vector.yaml"), str(BROKEN / "wrong-type.yaml")
    )
    assert result.exit_code == 2
    lines = [line for line in result.stderr.splitlines() if line]
    assert len(lines) == 3
    assert all(line.startswith(str(BROKEN)) for line in lines)


def test_cli_list_and_show_json() -> None:
    listed = json.loads(run("specs", "list", "--json").output)
    assert {row["name"] for row in listed} == set(SPECS)
    shown = json.loads(run("specs", "show", "theragun-gen4", "--json").output)
    assert shown["vectors"][0]["hex"] == "AA 70 01 03 09 60 03"


def test_cli_show_unknown_suggests() -> None:
    result = run("specs", "show", "theragun")
    assert result.exit_code == 2
    assert "did you mean 'theragun-gen4'" in result.stderr


def test_your_own_specs_folder_adds_and_replaces_and_a_broken_file_blocks_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gunctl.errors import GunctlError
    from gunctl.specs.loader import spec_dir

    shipped_text = (spec_dir() / "gunctl-open.yaml").read_text(encoding="utf-8")
    (tmp_path / "my-gun.yaml").write_text(
        shipped_text.replace("name: gunctl-open", "name: my-gun", 1), encoding="utf-8"
    )
    (tmp_path / "broken.yaml").write_bytes(b"\xff\xfe not yaml")
    monkeypatch.setenv("GUNCTL_SPECS", str(tmp_path))
    specs = load_specs()
    assert "my-gun" in specs
    assert "gunctl-open" in specs  # the shipped ones are all still there
    assert "broken" not in specs
    listed = CliRunner().invoke(cli, ["specs", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    mine = {row["name"]: row["yours"] for row in json.loads(listed.stdout)}
    assert mine["my-gun"] is True
    assert mine["gunctl-open"] is False
    checked = CliRunner().invoke(cli, ["specs", "validate"])
    assert checked.exit_code == 2  # validating names the broken one
    assert "broken.yaml" in checked.stderr

    monkeypatch.setenv("GUNCTL_SPECS", str(tmp_path / "nowhere"))
    with pytest.raises(GunctlError, match="does not exist"):
        load_specs()
