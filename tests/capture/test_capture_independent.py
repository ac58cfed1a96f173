"""The captures gunsim writes, read by an independent parser (btsnoop-parser), say the same.

A second reader, written by other people from the same format descriptions,
checks both sides at once: that ``gunsim record`` writes files other tools
read, in both datalinks, and that gunctl's reader finds the same ATT traffic
(L2CAP reassembly included) in them.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from btsnoop_parser.core import iter_records
from btsnoop_parser.l2cap import L2capDecoder

from gunctl.capture import Capture
from gunctl.capture.btsnoop import Datalink
from gunctl.specs.models import DeviceSpec

from capturehost import FAMILIES, record

_OPS = {0x12: "write", 0x52: "write_cmd", 0x1B: "notify", 0x1D: "indicate"}


def theirs(path: Path) -> list[tuple[str, str, int, str]]:
    decoder = L2capDecoder()
    out = []
    for packet in iter_records(path):
        frame = decoder.feed(packet)
        if frame is None or frame.cid != 4 or frame.payload[0] not in _OPS:
            continue
        pdu = frame.payload
        direction = "host" if frame.direction == "TX" else "device"
        out.append((direction, _OPS[pdu[0]], int.from_bytes(pdu[1:3], "little"), pdu[3:].hex()))
    return out


def ours(path: Path) -> list[tuple[str, str, int, str]]:
    return [
        (r.direction.value, r.op.value, r.handle, r.value.hex()) for r in Capture(path).records()
    ]


@pytest.mark.parametrize("family", FAMILIES)
def test_android_captures_read_the_same(family: str, captures: dict[str, Path]) -> None:
    mine = ours(captures[family])
    assert len(mine) > 50
    assert theirs(captures[family]) == mine


def test_btmon_captures_read_the_same(tmp_path: Path, family_specs: dict[str, DeviceSpec]) -> None:
    path = record(family_specs["modbus-twin"], tmp_path / "btmon.log", Datalink.MONITOR)
    assert theirs(path) == ours(path)
