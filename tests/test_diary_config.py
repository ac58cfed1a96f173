"""The diary's thresholds: one ``[diary]`` table, read by ``gunctl serve``, ``run`` and ``diary``.

A person who sets ``weeks = 4`` in the serve file must see the same refusal
from ``gunctl diary`` as from Home Assistant; a bad value is reported with the
file and line it is on, or with the variable that set it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from gunctl.cli.app import cli
from gunctl.config import load_diary, load_settings
from gunctl.errors import ConfigError

SERVE_FILE = """\
node_id = "desk"

[mqtt]
host = "broker.lan"

[devices]
sim = 1

[diary]
high_pain = 6
weeks = {weeks}
"""


def serve_file(tmp_path: Path, weeks: object = 4) -> Path:
    path = tmp_path / "serve.toml"
    path.write_text(SERVE_FILE.format(weeks=weeks))
    return path


def test_serve_and_the_other_commands_read_one_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = serve_file(tmp_path)
    assert load_settings(config).diary == load_diary(config)
    assert (load_diary(config).weeks, load_diary(config).high_pain) == (4, 6)
    assert load_diary(config).improve_percent == 30.0  # unset: the documented default
    monkeypatch.setenv("GUNCTL_DIARY_WEEKS", "5")  # a variable beats the file, as elsewhere
    monkeypatch.setenv("GUNCTL_DIARY_SESSIONS_PER_WEEK", "3")
    assert load_settings(config).diary.weeks == load_diary(config).weeks == 5
    assert load_diary().sessions_per_week == 3  # no file: the variables alone


@pytest.mark.parametrize(
    ("weeks", "says"),
    [
        (7, "serve.toml:11: diary.weeks: Input should be less than or equal to 6"),
        (1, "serve.toml:11: diary.weeks: Input should be greater than or equal to 2"),
        ('"three"', "serve.toml:11: diary.weeks: Input should be a valid integer"),
        ("3\nwekes = 2", "serve.toml:12: diary.wekes: unknown setting"),
    ],
)
def test_a_bad_threshold_names_its_line(tmp_path: Path, weeks: object, says: str) -> None:
    config = serve_file(tmp_path, weeks)
    for load in (load_settings, load_diary):
        with pytest.raises(ConfigError, match=re.escape(says)):
            load(config)


def test_a_bad_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUNCTL_DIARY_HIGH_PAIN", "11")
    with pytest.raises(ConfigError, match=re.escape("diary.high_pain (GUNCTL_DIARY_HIGH_PAIN)")):
        load_diary(serve_file(tmp_path))


def test_gunctl_diary_refuses_on_the_files_thresholds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GUNCTL_DATA_DIR", str(tmp_path / "data"))
    runner = CliRunner()
    scored = runner.invoke(cli, ["diary", "score", "--before", "--pain", "6"])
    assert scored.exit_code == 0, scored.output
    assert "refused" not in scored.output  # 6 is below the default high_pain of 8
    config = serve_file(tmp_path)  # high_pain = 6
    shown = runner.invoke(cli, ["diary", "--config", str(config), "--json"])
    assert shown.exit_code == 0, shown.output
    assert '"rule": "pain_severe"' in shown.output
    bad = runner.invoke(cli, ["diary", "--config", str(serve_file(tmp_path, 9))])
    assert bad.exit_code == 2  # invalid input, as for gunctl serve
    assert "serve.toml:11: diary.weeks: Input should be less than or equal to 6" in bad.output
