"""One naming scheme for variables, shown in every ``--help``; global options reach ``serve``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import click
import pytest
from click.testing import CliRunner

from gunctl.cli.app import cli


def commands(group: click.Group, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    ctx = click.Context(group)
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        yield (*path, name)
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


@pytest.mark.parametrize("path", list(commands(cli)), ids=" ".join)
def test_every_help_names_its_variables(path: tuple[str, ...]) -> None:
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    options = [line for line in result.output.splitlines() if line.lstrip().startswith("--")]
    if any(not line.lstrip().startswith(("--help", "--yes")) for line in options):
        assert "GUNCTL_" in result.output, result.output


def test_a_variable_has_one_name_whatever_the_command(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GUNCTL_SINCE", "not a date")  # history --since, not GUNCTL_HISTORY_SINCE
    result = CliRunner().invoke(cli, ["history"])
    assert result.exit_code == 2
    assert "not a date" in result.output


def test_serve_honours_the_global_log_level(monkeypatch: pytest.MonkeyPatch) -> None:
    from gunctl import config

    seen: dict[str, Any] = {}

    def fake_load(config_file: object = None, **overrides: Any) -> None:
        seen.update(overrides)
        raise config.ConfigError("stop here")

    monkeypatch.setattr(config, "load_settings", fake_load)
    result = CliRunner().invoke(cli, ["--log-level", "debug", "serve", "--sim", "1"])
    assert result.exit_code == 2
    assert seen["log_level"] == "debug"
    assert "log_json" not in seen  # not given: the settings decide
