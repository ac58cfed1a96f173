"""``gunctl profiles``: what a person sees, and what a script parses."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gunctl.cli.app import cli
from gunctl.resources import shipped

BROKEN = Path(__file__).parent / "data" / "profiles_broken"
SHIPPED = shipped("profiles")


@pytest.fixture(autouse=True)
def _no_user_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUNCTL_PROFILES", raising=False)


def run(*args: str, env: dict[str, str] | None = None) -> Result:
    return CliRunner().invoke(cli, ["profiles", *args], env=env)


# --- show ---------------------------------------------------------------------------


def test_show_glute_reads_well_for_a_person() -> None:
    result = run("show", "glute")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "Glutes and piriformis" in out
    for muscle in ("Gluteus maximus", "Gluteus medius", "Gluteus minimus", "Piriformis"):
        assert muscle in out
    assert "bullet" in out
    assert "7 min 46 s in all" in out
    assert "Stop at once on sharp, shooting or electric pain" in out
    assert "not medical advice" in out


def test_show_protocol_as_json() -> None:
    result = run("show", "sciatica-full", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["kind"] == "protocol"
    assert data["name"] == "sciatica-full"
    assert 300 <= data["total_s"] <= 600
    assert data["per_side_s"]["left"] + data["per_side_s"]["right"] == data["total_s"]
    assert [s["muscle"] for s in data["steps"]][:2] == ["erector-spinae", "quadratus-lumborum"]
    assert Path(data["source"]) == SHIPPED / "protocols" / "sciatica-full.yaml"


def test_show_a_muscle_envelope() -> None:
    result = run("show", "foot-arch")
    assert result.exit_code == 0, result.output
    assert "Arch of the foot" in result.output
    assert "30 to 60 s on one point" in result.output


def test_a_name_shared_by_protocol_and_muscle() -> None:
    protocol = json.loads(run("show", "piriformis", "--json").output)
    muscle = json.loads(run("show", "piriformis", "--muscle", "--json").output)
    assert protocol["kind"] == "protocol"
    assert muscle["kind"] == "muscle"
    assert muscle["intensity_cap"] <= 0.4
    assert muscle["pulsing_allowed"] is False
    assert muscle["heads"]["recommended"] == ["bullet"]


def test_show_an_unreachable_muscle_says_so() -> None:
    result = run("show", "iliopsoas")
    assert result.exit_code == 0, result.output
    assert "cannot reach it" in result.output


def test_show_unknown_name_suggests_and_exits_2() -> None:
    result = run("show", "glutes")
    assert result.exit_code == 2
    assert "no protocol or muscle named 'glutes'" in result.stderr
    assert "did you mean 'glute'?" in result.stderr


# --- list ---------------------------------------------------------------------------


def test_list_shows_protocols_and_muscles() -> None:
    result = run("list")
    assert result.exit_code == 0, result.output
    for name in ("glute", "piriformis", "hamstrings", "lower-back", "sciatica-full"):
        assert name in result.output
    assert "quadratus-lumborum" in result.output
    assert "not reachable" in result.output  # the iliopsoas


def test_list_as_json() -> None:
    result = run("list", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    protocols = {p["name"]: p for p in data["protocols"]}
    assert protocols["glute"]["steps"] == 4
    assert protocols["glute"]["total_s"] == 466
    muscles = {m["id"]: m for m in data["muscles"]}
    assert muscles["iliopsoas"]["reachable"] is False
    assert muscles["piriformis"]["hold_s"] == {"min": 30, "max": 60}


# --- validate -----------------------------------------------------------------------


def test_validate_everything_shipped() -> None:
    result = run("validate")
    assert result.exit_code == 0, result.output
    assert "sciatica-full.yaml: ok" in result.output
    assert "muscles.yaml: ok" in result.output


def test_validate_named_shipped_files_as_json() -> None:
    files = [str(SHIPPED / "muscles.yaml"), str(SHIPPED / "protocols" / "glute.yaml")]
    result = run("validate", "--json", *files)
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == {"ok": True, "files": files}


@pytest.mark.parametrize(
    ("name", "line", "field", "words"),
    [
        ("bad-syntax.yaml", 7, "(yaml)", "expected ','"),
        ("wrong-type.yaml", 8, "steps[0].intensity", "valid number"),
        ("over-cap.yaml", 16, "steps[1].intensity", "above the piriformis cap of 0.35"),
        ("forbidden-head.yaml", 7, "steps[0].head", "wedge head is forbidden on piriformis"),
        ("misspelt-muscle.yaml", 5, "steps[0].muscle", "did you mean 'piriformis'?"),
        ("too-long.yaml", 4, "steps", "above the session limit of 10 min"),
        ("name-mismatch.yaml", 1, "name", "differs from the file name"),
        ("broken-muscles.yaml", 8, "muscles.piriformis.heads", "missing from allowed"),
    ],
)
def test_a_broken_file_exits_2_with_file_line_and_field(
    name: str, line: int, field: str, words: str
) -> None:
    result = run("validate", str(BROKEN / name))
    assert result.exit_code == 2
    assert result.stdout == ""
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{BROKEN / name}:{line}: {field}: ")
    assert words in first


def test_every_problem_in_a_file_is_printed() -> None:
    result = run("validate", str(BROKEN / "several-problems.yaml"))
    assert result.exit_code == 2
    lines = result.stderr.splitlines()
    assert [line.split(": ")[0].rsplit(":", 1)[1] for line in lines] == ["7", "9", "12", "14", "24"]
    assert [line.split(": ")[1] for line in lines] == [
        "steps[0].head",
        "steps[0].hold_s",
        "steps[0].pulsing",
        "steps[1].muscle",
        "steps[2].head",
    ]


def test_problems_in_several_files_are_all_printed() -> None:
    names = ["over-cap.yaml", "forbidden-head.yaml", "misspelt-muscle.yaml"]
    result = run("validate", *(str(BROKEN / n) for n in names))
    assert result.exit_code == 2
    assert {Path(line.split(":")[0]).name for line in result.stderr.splitlines()} == set(names)


def test_validate_problems_as_json() -> None:
    result = run("validate", "--json", str(BROKEN / "over-cap.yaml"))
    assert result.exit_code == 2
    data = json.loads(result.stdout)
    assert data["ok"] is False
    (problem,) = data["problems"]
    assert problem["line"] == 16
    assert problem["field"] == "steps[1].intensity"


# --- the user folder ----------------------------------------------------------------


GENTLE_GLUTE = """\
    name: glute
    title: Gentle glute, my version
    description: One light hold on the big muscle.
    steps:
      - muscle: gluteus-maximus
        side: right
        head: cushion
        intensity: 0.3
        hold_s: 30
        ramp_s: 3
        rest_s: 5
        placement: Upper buttock.
"""


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    (tmp_path / "protocols").mkdir()
    (tmp_path / "protocols" / "glute.yaml").write_text(textwrap.dedent(GENTLE_GLUTE))
    return tmp_path


def test_user_folder_overrides_a_shipped_protocol(user_dir: Path) -> None:
    result = run("--profiles", str(user_dir), "show", "glute", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["title"] == "Gentle glute, my version"
    assert data["total_s"] == 3 + 30 + 3 + 5
    assert Path(data["source"]) == user_dir / "protocols" / "glute.yaml"


def test_user_folder_from_the_environment(user_dir: Path) -> None:
    result = run("list", "--json", env={"GUNCTL_PROFILES": str(user_dir)})
    assert result.exit_code == 0, result.output
    titles = {p["name"]: p["title"] for p in json.loads(result.output)["protocols"]}
    assert titles["glute"] == "Gentle glute, my version"
    assert titles["sciatica-full"] == "Full sciatica routine"


def test_a_broken_user_protocol_is_reported_and_left_out_and_the_rest_works(
    user_dir: Path,
) -> None:
    text = (BROKEN / "over-cap.yaml").read_text()
    (user_dir / "protocols" / "over-cap.yaml").write_text(text)
    for args, code in ((["list"], 0), (["show", "glute"], 0), (["validate"], 2)):
        result = run("--profiles", str(user_dir), *args)
        assert result.exit_code == code, args
        assert "over-cap.yaml:16: steps[1].intensity:" in result.stderr
    listed = run("list", "--profiles", str(user_dir), "--json")  # the folder after the command
    names = {p["name"]: p["yours"] for p in json.loads(listed.stdout)["protocols"]}
    assert "over-cap" not in names
    assert names["glute"] is True  # the user's own glute, marked as theirs
    assert names["sciatica-full"] is False
    assert "left out of your profiles" in listed.stderr


def test_a_missing_user_folder_is_a_usage_error(tmp_path: Path) -> None:
    result = run("--profiles", str(tmp_path / "nowhere"), "list")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr
