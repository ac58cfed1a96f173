"""Every recorded device fixture replays through its family's spec.

Fixtures are what ``gunctl probe ADDRESS --record`` saves: a device's GATT
table and its notifications. Adding a device to the suite is adding a file
under tests/fixtures/<family>/.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gunctl.capture.fixture import fixture_files, read_fixture
from gunctl.capture.replay import replay
from gunctl.datafile import InvalidFileError
from gunctl.specs.loader import get_spec

FIXTURES = Path(__file__).parent / "fixtures"
FILES = fixture_files(FIXTURES)


def test_there_are_fixtures_for_every_shipped_family() -> None:
    assert {p.parent.name for p in FILES} >= {"gunctl-open", "theragun-gen4", "basic-5level"}


@pytest.mark.parametrize("path", FILES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_a_fixture_replays_through_its_spec(path: Path) -> None:
    fixture = read_fixture(path)
    assert fixture.family == path.parent.name
    assert path.relative_to(FIXTURES) == fixture.filename
    spec = get_spec(fixture.family)
    chars = {c.uuid: c for s in fixture.services if s.uuid == spec.gatt.service
             for c in s.characteristics}  # fmt: skip
    assert "notify" in chars[spec.gatt.telemetry].flags
    assert {"write", "write-without-response"} & set(chars[spec.gatt.command].flags)
    coverage = replay(spec, fixture.records())
    assert coverage.failed == 0
    assert coverage.unknown == {}
    if spec.capabilities.telemetry.mode == "stream":
        assert coverage.decoded > 0  # a streaming gun notifies whether asked or not


def test_a_broken_fixture_names_the_file_and_field(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    path.write_text(FILES[0].read_text().replace('"model"', '"modle"'))
    with pytest.raises(InvalidFileError) as caught:
        read_fixture(path)
    assert {p.field for p in caught.value.problems} == {"model", "modle"}
    assert all(p.file == str(path) for p in caught.value.problems)
