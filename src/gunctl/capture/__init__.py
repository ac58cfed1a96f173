"""Reading Bluetooth captures (Android btsnoop, Linux ``btmon -w``) as ATT traffic.

``read_capture(path)`` yields the writes, notifications and indications of a
capture one at a time, so a capture of any size is read in flat memory; bad
files raise ``CaptureError`` naming the offset where reading stopped.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from gunctl.capture.att import AttOp, AttReader, AttRecord, GattTable
from gunctl.capture.btsnoop import CaptureError, read_packets

_BUFFER = 1 << 20


class Capture:
    """One capture file. ``records()`` streams it; ``reader`` then holds what was learnt."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.reader = AttReader()

    def records(self) -> Iterator[AttRecord]:
        """Every ATT record in the file; raises CaptureError or OSError."""
        with self.path.open("rb", buffering=_BUFFER) as stream:
            yield from self.reader.records(read_packets(stream))

    def table(self, connection: int) -> GattTable:
        return self.reader.tables.get(connection) or GattTable()


def read_capture(path: Path) -> Iterator[AttRecord]:
    return Capture(path).records()


__all__ = ["AttOp", "AttRecord", "Capture", "CaptureError", "GattTable", "read_capture"]
