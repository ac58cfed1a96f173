"""Recording simulated sessions as captures, for the capture tests."""

from __future__ import annotations

from pathlib import Path

from gunctl.capture.btsnoop import Datalink
from gunctl.specs.loader import spec_files
from gunctl.specs.models import DeviceSpec
from gunsim.radio import advertised_name
from gunsim.record import peer_address, record_session, write_capture

DATA = Path(__file__).parent.parent / "data"
# The shipped families, and one made up for these tests with a layout none of them has
FAMILY_FILES = [*spec_files(), DATA / "specs" / "modbus-twin.yaml"]
FAMILIES = [p.stem for p in FAMILY_FILES]


def record(spec: DeviceSpec, path: Path, datalink: Datalink = Datalink.H4) -> Path:
    """A simulated session of ``spec`` written to ``path``, run in virtual time."""
    frames = record_session(spec)
    write_capture(path, frames, datalink, advertised_name(spec, peer_address()))
    return path
