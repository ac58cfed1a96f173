"""Reading btsnoop captures: every family's simulated session comes back frame for frame."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from gunctl.capture import AttOp, Capture, CaptureError
from gunctl.capture.att import short_uuid
from gunctl.capture.btsnoop import Datalink, read_packets
from gunctl.specs.codec import Codec
from gunctl.specs.models import DeviceSpec, Direction
from gunsim.radio import gatt_table
from gunsim.record import ACL_MTU

from capturehost import FAMILIES, record


@pytest.mark.parametrize("family", FAMILIES)
def test_every_frame_of_a_session_decodes_with_its_uuid(
    family: str, captures: dict[str, Path], family_specs: dict[str, DeviceSpec]
) -> None:
    spec = family_specs[family]
    codec = Codec(spec)
    records = list(Capture(captures[family]).records())
    commands = [r for r in records if r.uuid == spec.gatt.command]
    reports = [r for r in records if r.uuid == spec.gatt.telemetry]
    assert {r.op for r in commands} <= {AttOp.WRITE, AttOp.WRITE_CMD}
    assert {r.direction for r in commands} == {Direction.HOST}
    assert {r.op for r in reports} == {AttOp.NOTIFY}
    assert len(commands) > 5
    assert len(reports) > 20
    for r in commands:
        codec.decode_command(r.value)  # raises on any damaged or misplaced byte
    for r in reports:
        codec.decode_report(r.value)
    assert [r.t for r in records] == sorted(r.t for r in records)


def test_long_notifications_are_reassembled(captures: dict[str, Path]) -> None:
    reports = [r for r in Capture(captures["modbus-twin"]).records() if r.op is AttOp.NOTIFY]
    # 30-byte frames in 27-byte ACL packets: each notification was split in two
    assert all(len(r.value) + 3 + 4 > ACL_MTU for r in reports)
    assert all(len(r.value) == 30 for r in reports)


def test_btmon_captures_read_as_android_ones(
    tmp_path: Path, captures: dict[str, Path], family_specs: dict[str, DeviceSpec]
) -> None:
    btmon = record(family_specs["modbus-twin"], tmp_path / "btmon.log", datalink=Datalink.MONITOR)
    assert btmon.read_bytes()[8:16] == struct.pack(">II", 1, 2001)
    h4 = [r.as_json() for r in Capture(captures["modbus-twin"]).records()]
    assert [r.as_json() for r in Capture(btmon).records()] == h4


def test_connection_and_gatt_discovery_are_remembered(
    captures: dict[str, Path], family_specs: dict[str, DeviceSpec]
) -> None:
    spec = family_specs["basic-5level"]
    source = Capture(captures["basic-5level"])
    first = next(iter(source.records()))
    table = source.table(first.connection)
    assert source.reader.peers[first.connection] == "AA:99:88:77:66:55"
    served = {c.role: c for s in gatt_table(spec) for c in s.characteristics}
    for role, uuid in (("command", spec.gatt.command), ("telemetry", spec.gatt.telemetry)):
        handle = served[role].value_handle
        assert table.characteristics[handle] == uuid
        assert table.service_of(handle) == spec.gatt.service
    assert table.properties[served["telemetry"].value_handle] == 0x10  # notify
    assert table.properties[served["command"].value_handle] == 0x04  # write without response
    assert table.service_of(served["battery"].value_handle) == short_uuid(0x180F)


def _header(datalink: int = 1002, version: int = 1) -> bytes:
    return b"btsnoop\0" + struct.pack(">II", version, datalink)


def _record(data: bytes, *, original: int | None = None, flags: int = 0) -> bytes:
    size = len(data)
    return struct.pack(">IIIIq", size if original is None else original, size, flags, 0, 0) + data


_GOOD = _record(b"\x04\x0e\x04\x01\x03\x0c\x00")  # an HCI event (command complete)

CORRUPT = [
    ("empty file", b"", 0, "not a btsnoop file"),
    ("text file", b"hello, this is not a capture\n", 0, "not a btsnoop file"),
    ("pcap file", bytes.fromhex("d4c3b2a1020004000000000000000000"), 0, "not a btsnoop file"),
    ("header cut short", b"btsnoop\0\0\0", 10, "file header is cut short"),
    ("unknown version", _header(version=2), 8, "version 2"),
    ("unknown datalink", _header(datalink=1003), 12, "datalink 1003"),
    ("record header cut short", _header() + _GOOD + b"\0" * 10, 16 + len(_GOOD), "record header"),
    ("record data cut short", _header() + _GOOD + _GOOD[:30], 16 + len(_GOOD), "truncated"),
    ("impossible lengths", _header() + _record(b"\x04\x0e", original=1), 16, "lengths"),
    ("absurd length", _header() + struct.pack(">IIIIq", 2**31, 2**31, 0, 0, 0), 16, "lengths"),
    ("unknown packet type", _header() + _GOOD + _record(b"\x09\x00"), 16 + len(_GOOD), "0x09"),
    ("empty H4 record", _header() + _record(b""), 16, "empty record"),
]


@pytest.mark.parametrize(
    ("content", "offset", "words"), [c[1:] for c in CORRUPT], ids=[c[0] for c in CORRUPT]
)
def test_a_bad_file_names_the_offset(
    tmp_path: Path, content: bytes, offset: int, words: str
) -> None:
    path = tmp_path / "bad.log"
    path.write_bytes(content)
    with pytest.raises(CaptureError) as caught:
        list(Capture(path).records())
    assert caught.value.offset == offset
    assert words in str(caught.value)
    assert str(caught.value).startswith(f"offset {offset}: ")


def test_a_capture_cut_mid_way_gives_what_came_before(
    tmp_path: Path, captures: dict[str, Path]
) -> None:
    whole = captures["gunctl-open"].read_bytes()
    with captures["gunctl-open"].open("rb") as stream:
        offsets = [p.offset for p in read_packets(stream)]
    cut = offsets[len(offsets) // 2] + 30  # in the middle of a record
    path = tmp_path / "cut.log"
    path.write_bytes(whole[:cut])
    seen = []
    with pytest.raises(CaptureError, match="truncated") as caught:
        seen.extend(Capture(path).records())
    assert caught.value.offset == offsets[len(offsets) // 2]
    assert len(seen) > 100
