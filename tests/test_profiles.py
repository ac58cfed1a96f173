"""The shipped muscles and protocols, their envelope, and the loader's checks."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from gunctl.datafile import InvalidFileError
from gunctl.heads import Head
from gunctl.profiles.loader import Catalogue, load_catalogue, validate_files
from gunctl.profiles.models import (
    MAX_HOLD_S,
    MAX_SESSION_S,
    Muscle,
    Protocol,
    Side,
)
from gunctl.resources import shipped

BROKEN = Path(__file__).parent / "data" / "profiles_broken"
SHIPPED = shipped("profiles")
PROTOCOL_FILES = sorted((SHIPPED / "protocols").glob("*.yaml"))


@pytest.fixture(autouse=True)
def _no_user_profiles(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GUNCTL_PROFILES", raising=False)


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return load_catalogue()


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


# --- the shipped files --------------------------------------------------------------


def test_every_shipped_file_validates() -> None:
    files = [SHIPPED / "muscles.yaml", *PROTOCOL_FILES]
    assert len(PROTOCOL_FILES) >= 5
    assert validate_files(files) == []


def test_the_expected_muscles_and_protocols_are_shipped(catalogue: Catalogue) -> None:
    assert {
        "gluteus-maximus",
        "gluteus-medius",
        "gluteus-minimus",
        "piriformis",
        "tensor-fasciae-latae",
        "hamstrings",
        "adductors",
        "quadratus-lumborum",
        "erector-spinae",
        "iliopsoas",
        "foot-arch",
    } <= set(catalogue.muscles)
    assert {"glute", "piriformis", "hamstrings", "lower-back", "sciatica-full"} <= set(
        catalogue.protocols
    )
    assert catalogue.source_of("glute") == SHIPPED / "protocols" / "glute.yaml"
    assert catalogue.source_of("foot-arch") == SHIPPED / "muscles.yaml"


def test_muscle_envelopes_follow_the_seed_numbers(catalogue: Catalogue) -> None:
    for name, muscle in catalogue.muscles.items():
        if muscle.hold_s is not None:
            assert muscle.hold_s.max <= MAX_HOLD_S, name
        assert muscle.session_s_max <= muscle.per_48h_s_max, name
        if muscle.near_sciatic_nerve:
            assert muscle.intensity_cap <= 0.4, name
            assert not muscle.pulsing_allowed, name
    piriformis = catalogue.muscles["piriformis"]
    assert piriformis.near_sciatic_nerve
    assert piriformis.hold_s is not None
    assert (piriformis.hold_s.min, piriformis.hold_s.max) == (30, 60)
    assert piriformis.heads.recommended == [Head.BULLET]
    assert not piriformis.pulsing_allowed
    iliopsoas = catalogue.muscles["iliopsoas"]
    assert not iliopsoas.reachable
    assert iliopsoas.heads.allowed == []


@pytest.mark.parametrize("path", PROTOCOL_FILES, ids=lambda p: p.stem)
def test_each_protocol_respects_the_seed_numbers(catalogue: Catalogue, path: Path) -> None:
    protocol = catalogue.protocols[path.stem]
    assert protocol.name == path.stem
    assert protocol.total_s() <= MAX_SESSION_S
    for step in protocol.steps:
        muscle = catalogue.muscles[step.muscle]
        assert muscle.reachable
        assert step.hold_s <= MAX_HOLD_S
        assert step.intensity <= muscle.intensity_cap
        if step.muscle == "piriformis":
            assert step.head is Head.BULLET
            assert step.intensity <= 0.4
            assert 30 <= step.hold_s <= 60
            assert not step.pulsing
    assert all(step.muscle != "iliopsoas" for step in protocol.steps)


def test_glute_covers_the_buttock_on_both_sides(catalogue: Catalogue) -> None:
    glute = catalogue.protocols["glute"]
    muscles = {step.muscle for step in glute.steps}
    assert {"gluteus-maximus", "gluteus-medius", "gluteus-minimus", "piriformis"} <= muscles
    assert all(step.side is Side.BOTH for step in glute.steps)


def test_sciatica_full_is_a_five_to_ten_minute_session(catalogue: Catalogue) -> None:
    full = catalogue.protocols["sciatica-full"]
    assert 5 * 60 <= full.total_s() <= 10 * 60
    muscles = {step.muscle for step in full.steps}
    assert {"gluteus-maximus", "piriformis", "hamstrings"} <= muscles
    assert muscles & {"quadratus-lumborum", "erector-spinae"}


# --- expanding steps and counting time ---------------------------------------------


def _protocol() -> Protocol:
    step = {"head": "ball", "intensity": 0.3, "ramp_s": 2, "rest_s": 5, "placement": "here"}
    return Protocol.model_validate(
        {
            "name": "demo",
            "title": "Demo",
            "description": "Three steps.",
            "steps": [
                {**step, "muscle": "gluteus-maximus", "side": "both", "hold_s": 40},
                {**step, "muscle": "gluteus-medius", "side": "right", "hold_s": 30},
                {**step, "muscle": "hamstrings", "side": "left", "hold_s": 50},
            ],
        }
    )


def test_a_both_step_becomes_left_then_right_in_its_own_place() -> None:
    holds = _protocol().expanded()
    assert [(h.muscle, h.side) for h in holds] == [
        ("gluteus-maximus", "left"),
        ("gluteus-maximus", "right"),
        ("gluteus-medius", "right"),
        ("hamstrings", "left"),
    ]
    assert [h.index for h in holds] == [0, 0, 1, 2]


def test_a_side_filter_keeps_only_that_side() -> None:
    left = _protocol().expanded("left")
    assert [(h.muscle, h.side) for h in left] == [
        ("gluteus-maximus", "left"),
        ("hamstrings", "left"),
    ]


def test_total_time_counts_both_ramps_the_hold_and_the_rest() -> None:
    protocol = _protocol()
    # each hold: 2 s up + hold + 2 s down + 5 s rest
    assert protocol.total_s("left") == (40 + 9) + (50 + 9)
    assert protocol.total_s("right") == (40 + 9) + (30 + 9)
    assert protocol.total_s() == protocol.total_s("left") + protocol.total_s("right")


def test_a_near_nerve_muscle_with_a_high_cap_is_refused() -> None:
    with pytest.raises(ValueError, match="near the sciatic nerve"):
        Muscle.model_validate(
            {
                "name": "Test",
                "region": "buttock",
                "depth": "deep",
                "near_sciatic_nerve": True,
                "reachable": True,
                "heads": {"recommended": ["bullet"], "allowed": ["bullet"]},
                "intensity_cap": 0.8,
                "hold_s": {"min": 30, "max": 60},
                "session_s_max": 60,
                "per_48h_s_max": 90,
                "pulsing_allowed": False,
                "placement": "Deep.",
            }
        )


# --- problems in files --------------------------------------------------------------


def problems_of(name: str) -> list[str]:
    return [str(p) for p in validate_files([BROKEN / name])]


def test_yaml_syntax_error_names_the_line() -> None:
    (problem,) = problems_of("bad-syntax.yaml")
    assert problem.startswith(f"{BROKEN / 'bad-syntax.yaml'}:7: (yaml): ")


def test_a_word_where_a_number_belongs() -> None:
    (problem,) = problems_of("wrong-type.yaml")
    assert ":8: steps[0].intensity: " in problem
    assert "number" in problem


def test_intensity_above_the_muscle_cap_is_an_error_not_a_clamp() -> None:
    (problem,) = problems_of("over-cap.yaml")
    assert ":16: steps[1].intensity: 0.8 is above the piriformis cap of 0.35" in problem


def test_forbidden_head() -> None:
    (problem,) = problems_of("forbidden-head.yaml")
    assert ":7: steps[0].head: the wedge head is forbidden on piriformis" in problem


def test_misspelt_muscle_gets_a_suggestion() -> None:
    (problem,) = problems_of("misspelt-muscle.yaml")
    assert ":5: steps[0].muscle: unknown muscle 'piriformus'" in problem
    assert "did you mean 'piriformis'?" in problem


def test_every_problem_in_a_file_is_reported() -> None:
    problems = problems_of("several-problems.yaml")
    expected = [
        ":7: steps[0].head: the flat head is forbidden on piriformis",
        ":9: steps[0].hold_s: 75 s is outside the piriformis hold range of 30 to 60 s",
        ":12: steps[0].pulsing: pulsing is not allowed on piriformis",
        ":14: steps[1].muscle: iliopsoas cannot be reached",
        ":24: steps[2].head: unknown head 'bulet' (did you mean 'bullet'?)",
    ]
    assert len(problems) == len(expected)
    for problem, fragment in zip(problems, expected, strict=True):
        assert fragment in problem


def test_a_protocol_longer_than_a_session() -> None:
    (problem,) = problems_of("too-long.yaml")
    assert ":4: steps: the whole protocol takes 13 min 52 s" in problem
    assert "10 min" in problem


def test_name_must_match_the_file() -> None:
    (problem,) = problems_of("name-mismatch.yaml")
    assert ":1: name: name 'glutes' differs from the file name 'name-mismatch'" in problem


def test_a_broken_catalogue_reports_each_muscle_problem() -> None:
    problems = problems_of("broken-muscles.yaml")
    assert any(":8: muscles.piriformis.heads: recommended heads ['flat']" in p for p in problems)
    assert any(":13: muscles.piriformis.hold_s.max: " in p for p in problems)


def test_too_much_time_on_one_muscle_in_a_session(tmp_path: Path) -> None:
    step = """
      - muscle: piriformis
        side: left
        head: bullet
        intensity: 0.3
        hold_s: 60
        ramp_s: 3
        rest_s: 5
        placement: Deep mid-buttock.
    """
    path = write(
        tmp_path / "much.yaml",
        "name: much\ntitle: Much\ndescription: Three long holds.\nsteps:"
        + textwrap.indent(textwrap.dedent(step) * 3, "  "),
    )
    (problem,) = [str(p) for p in validate_files([path])]
    assert "steps[1].hold_s: piriformis (left) gets 2 min 12 s" in problem
    assert "session limit of 2 min" in problem


# --- the user folder ---------------------------------------------------------------


SHORT_GLUTE = """\
    name: glute
    title: My short glute routine
    description: Only the big muscle.
    steps:
      - muscle: gluteus-maximus
        side: left
        head: ball
        intensity: 0.4
        hold_s: 30
        ramp_s: 2
        rest_s: 5
        placement: Upper buttock.
"""


def test_a_user_protocol_replaces_the_shipped_one_by_name(tmp_path: Path) -> None:
    path = write(tmp_path / "protocols" / "glute.yaml", SHORT_GLUTE)
    catalogue = load_catalogue(tmp_path)
    assert catalogue.protocols["glute"].title == "My short glute routine"
    assert catalogue.source_of("glute") == path
    assert "sciatica-full" in catalogue.protocols  # the other shipped ones stay


def test_the_user_folder_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write(tmp_path / "protocols" / "glute.yaml", SHORT_GLUTE)
    monkeypatch.setenv("GUNCTL_PROFILES", str(tmp_path))
    assert load_catalogue().protocols["glute"].title == "My short glute routine"


def test_a_stricter_user_muscle_applies_to_shipped_protocols(tmp_path: Path) -> None:
    text = (SHIPPED / "muscles.yaml").read_text(encoding="utf-8")
    start = text.index("  piriformis:")
    end = text.index("\n  tensor-fasciae-latae:")
    piriformis = text[start:end].replace("intensity_cap: 0.35", "intensity_cap: 0.2")
    write(tmp_path / "muscles.yaml", "muscles:\n" + piriformis + "\n")
    with pytest.raises(InvalidFileError) as caught:
        load_catalogue(tmp_path)
    messages = [str(p) for p in caught.value.problems]
    # every shipped protocol that works the piriformis now goes over its cap
    for name in ("glute", "piriformis", "sciatica-full"):
        assert any(
            f"{name}.yaml:" in m and "above the piriformis cap of 0.2" in m for m in messages
        ), name
    assert not any("hamstrings.yaml" in m for m in messages)


def test_problems_across_files_are_raised_together(tmp_path: Path) -> None:
    protocols = tmp_path / "protocols"
    protocols.mkdir()
    for name in ("over-cap.yaml", "forbidden-head.yaml", "wrong-type.yaml"):
        shutil.copy(BROKEN / name, protocols / name)
    with pytest.raises(InvalidFileError) as caught:
        load_catalogue(tmp_path)
    files = {Path(p.file).name for p in caught.value.problems}
    assert files == {"over-cap.yaml", "forbidden-head.yaml", "wrong-type.yaml"}
