"""Device fixtures: a gun's GATT table and a stretch of its notifications, as a JSON file.

``gunctl probe ADDRESS --record`` writes one per device and firmware, as
``<fixtures>/<family>/<model>_<firmware>.json``, named after what the device
says of itself: the Device Information Service's model number and firmware
revision where it has them, else its advertised name and ``unknown``. The test
suite replays every fixture's notifications through its family's spec, so a
contributor adds a device to the tests by adding a file. Addresses are left
out: a fixture is shared in a pull request, and nothing in it needs one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import Field, ValidationError

from gunctl.capture.att import AttOp, AttRecord, short_uuid
from gunctl.datafile import DataModel, InvalidFileError, Problem, field_name
from gunctl.specs.models import Direction

MODEL_NUMBER = short_uuid(0x2A24)
FIRMWARE_REVISION = short_uuid(0x2A26)
FIXTURE_VERSION = 1


class Characteristic(DataModel):
    uuid: str
    handle: int
    flags: list[str]
    descriptors: list[str] = Field(default_factory=list)
    value: str | None = None  # hex, when it was readable
    read_error: str | None = None


class Service(DataModel):
    uuid: str
    handle: int
    characteristics: list[Characteristic]


class Note(DataModel):
    t: float  # seconds since recording started
    uuid: str
    hex: str


class Fixture(DataModel):
    """One device as a probe saw it."""

    fixture: int = FIXTURE_VERSION
    family: str | None  # the firmware spec the device matched, if any
    model: str
    firmware: str
    name: str | None  # the advertised name
    advertised_services: list[str] = Field(default_factory=list)
    manufacturer_data: dict[str, str] = Field(default_factory=dict)  # "0xFFFF" -> hex
    seconds: float  # how long notifications were recorded
    services: list[Service]
    notifications: list[Note]

    @property
    def filename(self) -> Path:
        return Path(self.family or "unknown") / f"{_slug(self.model)}_{_slug(self.firmware)}.json"

    def records(self) -> Iterator[AttRecord]:
        """The notifications as capture records, so a spec replays them as it does a capture."""
        handles = {c.uuid: c.handle for s in self.services for c in s.characteristics}
        for note in self.notifications:
            value = bytes.fromhex(note.hex)
            handle = handles.get(note.uuid, 0)
            yield AttRecord(note.t, 0, Direction.DEVICE, AttOp.NOTIFY, handle, note.uuid, value, 0)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "unknown"


def _readable(services: list[dict[str, Any]], uuid: str) -> str | None:
    """A Device Information string the probe read, if the device has it."""
    for service in services:
        for char in service["characteristics"]:
            if char["uuid"] == uuid and char.get("value"):
                text = bytes.fromhex(char["value"]).decode("utf-8", "replace")
                return text.strip("\0 ").strip() or None
    return None


def from_probe(probe: dict[str, Any], family: str | None, seconds: float) -> Fixture:
    """A fixture from what ``gunctl probe`` gathered."""
    device = probe["device"]
    services = probe["services"]
    return Fixture(
        family=family,
        model=_readable(services, MODEL_NUMBER) or device["name"] or "unknown",
        firmware=_readable(services, FIRMWARE_REVISION) or "unknown",
        name=device["name"],
        advertised_services=device["services"],
        manufacturer_data=device["manufacturer_data"],
        seconds=seconds,
        services=services,
        notifications=[
            Note(t=n["t"], uuid=n["uuid"], hex=n["hex"].replace(" ", ""))
            for n in probe["notifications"]
        ],
    )


def write_fixture(fixture: Fixture, root: Path) -> Path:
    path = root / fixture.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(fixture.model_dump_json(indent=1) + "\n", encoding="utf-8")
    return path


def read_fixture(path: Path) -> Fixture:
    """Load a fixture; a broken one raises InvalidFileError naming file and field."""
    try:
        return Fixture.model_validate_json(path.read_bytes())
    except OSError as exc:
        raise InvalidFileError([Problem(str(path), None, "(file)", str(exc))]) from exc
    except ValidationError as exc:
        raise InvalidFileError(
            [Problem(str(path), None, field_name(tuple(e["loc"])), e["msg"]) for e in exc.errors()]
        ) from exc


def fixture_files(root: Path) -> list[Path]:
    return sorted(root.glob("*/*.json"))
