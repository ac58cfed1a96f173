"""``gunctl capture show``: the records and a per-characteristic summary, or one clear error."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from gunctl.cli.app import cli


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, ["capture", "show", *args])


def test_json_gives_one_object_per_record_then_the_summary(captures: dict[str, Path]) -> None:
    result = run("--json", str(captures["basic-5level"]))
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines()]
    *records, summary = lines
    assert {"t", "op", "handle", "uuid", "value", "direction", "connection"} <= set(records[0])
    writes = [r for r in records if r["uuid"] == "0000fff2-0000-1000-8000-00805f9b34fb"]
    assert {r["op"] for r in writes} == {"write_cmd"}
    assert "55010302" in {r["value"] for r in writes}  # level 3
    rows = {row["uuid"]: row for row in summary["summary"]}
    status = rows["0000fff1-0000-1000-8000-00805f9b34fb"]
    assert status["lengths"] == [6]
    assert status["constant_prefix"] == "5681"  # header and status opcode
    assert status["count"] == sum(r["op"] == "notify" for r in records)
    assert summary["records"] == len(records)


def test_text_lists_records_and_the_table(captures: dict[str, Path]) -> None:
    result = run(str(captures["theragun-gen4"]))
    assert result.exit_code == 0
    assert "write     0x000f 0000ffe2-0000-1000-8000-00805f9b34fb  aa 10 10 00" in result.output
    assert "0000ffe2-0000-1000-8000-00805f9b34fb" in result.output
    assert "ATT records" in result.output
    assert "constant start" in result.output


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"", "offset 0: not a btsnoop file"),
        (b"btsnoop\0" + bytes([0, 0, 0, 1, 0, 0, 3, 0xEA]) + b"\0" * 7, "offset 16: record header"),
    ],
)
def test_a_bad_file_is_one_line_and_exit_2(tmp_path: Path, content: bytes, expected: str) -> None:
    path = tmp_path / "bad.log"
    path.write_bytes(content)
    result = run(str(path))
    assert result.exit_code == 2
    assert len(result.output.splitlines()) == 1
    assert result.output.startswith(f"gunctl: {path}: {expected}")


def test_a_missing_file_is_one_line(tmp_path: Path) -> None:
    result = run(str(tmp_path / "nope.log"))
    assert result.exit_code == 2
    assert result.output.strip() == f"gunctl: {tmp_path / 'nope.log'}: No such file or directory"


def test_frames_the_capture_cut_short_are_left_out_and_named(tmp_path: Path) -> None:
    """A filtered snoop log keeps the start of each packet: no half value is shown as a frame."""
    notify = bytes([0x1B, 0x14, 0x00]) + bytes(range(20))  # a 20-byte notification
    acl = struct.pack("<HHHH", 0x2040, 4 + len(notify), len(notify), 4) + notify
    kept = b"\x02" + acl[:12]  # the H4 type byte and the first 11 ACL bytes
    record = struct.pack(">IIIIq", 1 + len(acl), len(kept), 1, 0, 0) + kept
    path = tmp_path / "filtered.log"
    path.write_bytes(b"btsnoop\0" + struct.pack(">II", 1, 1002) + record)
    result = CliRunner().invoke(cli, ["capture", "show", "--json", str(path)])
    assert result.exit_code == 0
    assert json.loads(result.stdout) == {"summary": [], "records": 0, "cut": 1}
    assert "1 ATT frames were cut short by the capture itself" in result.stderr
