"""A per-characteristic summary of a capture, built as the records stream past.

For each characteristic (connection, handle and which way the bytes went) it
keeps the count, the shortest and longest value, the distinct lengths (up to a
few) and the leading bytes every value shared: the first things a person looks
at to tell a frame header from a payload. Memory does not grow with the capture.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gunctl.capture.att import AttOp, AttRecord
from gunctl.specs.models import Direction

MAX_LENGTHS = 8  # distinct lengths listed before the summary gives a range only


@dataclass
class Characteristic:
    connection: int
    handle: int
    direction: str
    uuid: str | None
    ops: set[AttOp] = field(default_factory=set)
    count: int = 0
    shortest: int = 0
    longest: int = 0
    lengths: set[int] = field(default_factory=set)
    prefix: bytes = b""
    first_t: float = 0.0
    last_t: float = 0.0

    def add(self, record: AttRecord) -> None:
        value = record.value
        size = len(value)
        if self.count == 0:
            self.prefix, self.shortest, self.longest = value, size, size
            self.first_t = record.t
        elif not value.startswith(self.prefix):
            self.prefix = _common(self.prefix, value)
        if size not in self.lengths:
            self.shortest = min(self.shortest, size)
            self.longest = max(self.longest, size)
            if len(self.lengths) <= MAX_LENGTHS:
                self.lengths.add(size)
        if record.op not in self.ops:
            self.ops.add(record.op)
        if self.uuid is None:
            self.uuid = record.uuid
        self.count += 1
        self.last_t = record.t

    def as_json(self) -> dict[str, object]:
        many = len(self.lengths) > MAX_LENGTHS
        return {
            "connection": self.connection,
            "handle": self.handle,
            "uuid": self.uuid,
            "direction": self.direction,
            "ops": sorted(op.value for op in self.ops),
            "count": self.count,
            "lengths": None if many else sorted(self.lengths),
            "shortest": self.shortest,
            "longest": self.longest,
            "constant_prefix": self.prefix.hex(),
            "first_t": round(self.first_t, 6),
            "last_t": round(self.last_t, 6),
        }


def _common(a: bytes, b: bytes) -> bytes:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return a[:i]
    return a[:n]


class Summary:
    """Feed records with ``add``; ``rows`` lists characteristics in order of first sight."""

    def __init__(self) -> None:
        self._by_key: dict[tuple[int, int, Direction], Characteristic] = {}

    def add(self, record: AttRecord) -> None:
        key = (record.connection, record.handle, record.direction)
        row = self._by_key.get(key)
        if row is None:
            row = self._by_key[key] = Characteristic(
                record.connection, record.handle, record.direction.value, record.uuid
            )
        row.add(record)

    def add_all(self, records: Iterable[AttRecord]) -> Summary:
        for record in records:
            self.add(record)
        return self

    @property
    def rows(self) -> list[Characteristic]:
        return list(self._by_key.values())

    @property
    def count(self) -> int:
        return sum(r.count for r in self._by_key.values())
