"""Working out a frame layout from captured frames alone: checksum, header, length, kinds.

Every inference here is a search whose answer must hold for every frame it is
about, never for most of them: a checksum is claimed only when one algorithm
of the catalogue, over one range, at one place, in one byte order, matches
every distinct frame seen in both directions. With a handful of frames an
8-bit checksum could match by chance, so below ``MIN_FRAMES`` distinct frames
nothing is claimed. Encrypted or rolling-code frames match nothing and have no
constant bytes, and the result says exactly that.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from gunctl.specs.checksums import ChecksumKind, checksum
from gunctl.specs.models import Part

ByteOrder = Literal["big", "little"]
MIN_FRAMES = 6  # distinct frames needed before a checksum is claimed
MAX_START = 4  # checksum coverage may start at bytes 0..MAX_START
MAX_LEADING_AT = 3  # a checksum before its coverage sits at bytes 1..MAX_LEADING_AT


@dataclass(frozen=True)
class ChecksumFit:
    """One way a checksum explains every frame."""

    kind: ChecksumKind
    start: int  # first covered byte
    at: int | None  # where the checksum sits; None: the last bytes of the frame
    byte_order: ByteOrder

    def describe(self) -> str:
        where = "at the end" if self.at is None else f"at byte {self.at}"
        order = f", {self.byte_order}-endian" if self.kind.size > 1 else ""
        return f"{self.kind.value} over byte {self.start} onwards, {where}{order}"

    def matches(self, frame: bytes) -> bool:
        size = self.kind.size
        if self.at is None:
            if len(frame) < self.start + size + 1:
                return False
            covered, found = frame[self.start : -size], frame[-size:]
        else:
            if len(frame) <= self.start:
                return False
            covered, found = frame[self.start :], frame[self.at : self.at + size]
        return checksum(self.kind, covered).to_bytes(size, self.byte_order) == found


def _candidates() -> list[ChecksumFit]:
    out = []
    for kind in ChecksumKind:
        orders: tuple[ByteOrder, ...] = ("big", "little") if kind.size > 1 else ("big",)
        for order in orders:
            for start in range(MAX_START + 1):
                out.append(ChecksumFit(kind, start, None, order))
                for at in range(1, MAX_LEADING_AT + 1):
                    if at + kind.size <= start:
                        out.append(ChecksumFit(kind, start, at, order))
    return out


CANDIDATES = _candidates()


def find_checksums(frames: Sequence[bytes]) -> list[ChecksumFit]:
    """Every catalogue entry that matches all ``frames``, the widest coverage first."""
    if len(set(frames)) < MIN_FRAMES:
        return []
    fits = [c for c in CANDIDATES if all(c.matches(f) for f in frames)]
    return sorted(fits, key=lambda c: (c.start, c.at is not None, c.kind.size))


def constant_prefix(frames: Sequence[bytes], stop: int | None = None) -> bytes:
    """The leading bytes every frame shares, up to ``stop``."""
    if not frames:
        return b""
    first = frames[0]
    n = min(len(f) for f in frames)
    if stop is not None:
        n = min(n, stop)
    for i in range(n):
        if any(f[i] != first[i] for f in frames):
            return first[:i]
    return first[:n]


@dataclass(frozen=True)
class Layout:
    """Where the parts of a frame sit, as the spec format describes them."""

    parts: list[Part]
    header_size: int
    opcode_at: int
    length_at: int | None
    checksum: ChecksumFit | None

    @property
    def head(self) -> int:
        """Bytes before the payload."""
        used = [self.header_size, self.opcode_at + 1]
        if self.length_at is not None:
            used.append(self.length_at + 1)
        if self.checksum is not None and self.checksum.at is not None:
            used.append(self.checksum.at + self.checksum.kind.size)
        return max(used)

    @property
    def tail(self) -> int:
        if self.checksum is None or self.checksum.at is not None:
            return 0
        return self.checksum.kind.size

    def payload(self, frame: bytes) -> bytes:
        return frame[self.head : len(frame) - self.tail]


def header_size(host: Sequence[bytes], device: Sequence[bytes], fit: ChecksumFit | None) -> int:
    """How many leading bytes are the header.

    The header is what every frame of a direction starts with. When both
    directions share exactly as many constant bytes, the last of them is taken
    as the opcode: each direction then only ever used one kind of frame.
    """
    stop = fit.at if fit is not None and fit.at is not None else None
    ph, pd = len(constant_prefix(host, stop)), len(constant_prefix(device, stop))
    size = min(ph, pd)
    if size >= 2 and ph == pd:
        size -= 1
    return size


def find_layout(
    host: Sequence[bytes], device: Sequence[bytes], fit: ChecksumFit | None
) -> Layout | None:
    """The frame layout, or None when the frames share no header byte."""
    size = header_size(host, device, fit)
    if size == 0:
        return None
    frames = [*host, *device]
    taken = set(range(size))
    if fit is not None and fit.at is not None:
        taken |= set(range(fit.at, fit.at + fit.kind.size))
    slots = [i for i in range(size, size + 6) if i not in taken][:2]
    overhead = size + 2 + (fit.kind.size if fit else 0)
    varied = len({len(f) for f in frames}) > 1
    length_at = next(
        (
            q
            for q in slots
            if varied and all(len(f) > q and f[q] == len(f) - overhead for f in frames)
        ),
        None,
    )
    opcode_at = slots[0] if length_at != slots[0] else slots[1]
    positions: dict[Part, int] = {Part.HEADER: 0, Part.OPCODE: opcode_at}
    if length_at is not None:
        positions[Part.LENGTH] = length_at
    if fit is not None:
        positions[Part.CHECKSUM] = fit.at if fit.at is not None else 1 << 16
    positions[Part.PAYLOAD] = 1 << 15
    parts = sorted(positions, key=lambda p: positions[p])
    return Layout(parts, size, opcode_at, length_at, fit)


@dataclass
class Kind:
    """Frames of one direction sharing an opcode and a payload size."""

    direction: str
    opcode: int
    size: int
    frames: list[tuple[float, bytes]] = field(default_factory=list)  # (t, payload)
    examples: dict[bytes, bytes] = field(default_factory=dict)  # payload -> its whole frame

    @property
    def distinct(self) -> list[bytes]:
        return list(self.examples)

    @property
    def label(self) -> str:
        return f"{self.direction} opcode 0x{self.opcode:02x} with {self.size} payload bytes"

    def constant(self) -> list[bool]:
        """For each payload byte: the same in every frame of the kind."""
        values = self.distinct
        return [len({v[i] for v in values}) == 1 for i in range(self.size)]

    def distinct_at(self, i: int) -> int:
        return len({v[i] for v in self.distinct})


def group_kinds(
    layout: Layout, direction: str, frames: Sequence[tuple[float, bytes]]
) -> list[Kind]:
    kinds: dict[tuple[int, int], Kind] = {}
    for t, frame in frames:
        if len(frame) < layout.head + layout.tail:
            continue  # too short to be a frame of this layout
        payload = layout.payload(frame)
        key = (frame[layout.opcode_at], len(payload))
        kind = kinds.get(key)
        if kind is None:
            kind = kinds[key] = Kind(direction, *key)
        kind.frames.append((t, payload))
        kind.examples.setdefault(payload, frame)
    return sorted(kinds.values(), key=lambda k: (-len(k.frames), k.opcode))


@dataclass(frozen=True)
class Candidate:
    """A guess at a field: where it sits in the payload, its width and byte order."""

    offset: int
    width: int
    byte_order: ByteOrder

    def value(self, payload: bytes) -> int:
        return int.from_bytes(payload[self.offset : self.offset + self.width], self.byte_order)

    def describe(self) -> str:
        order = f" {self.byte_order}-endian" if self.width > 1 else ""
        return f"payload byte {self.offset}, {self.width * 8}-bit{order}"


def split_fields(kind: Kind) -> list[tuple[int, int, bool]]:
    """The payload cut into (offset, width, varies) runs, the varying ones as likely fields.

    Two neighbouring varying bytes make a 16-bit value when one of them takes
    many values and the other fewer (its high byte); a varying byte left on
    its own is an 8-bit value.
    """
    constant = kind.constant()
    out: list[tuple[int, int, bool]] = []
    i = 0
    while i < kind.size:
        if constant[i]:
            j = i
            while j < kind.size and constant[j]:
                j += 1
            out.append((i, j - i, False))
            i = j
            continue
        width = 2 if i + 1 < kind.size and not constant[i + 1] and _pairs(kind, i) else 1
        out.append((i, width, True))
        i += width
    return out


def _pairs(kind: Kind, i: int) -> bool:
    first, second = kind.distinct_at(i), kind.distinct_at(i + 1)
    low, high = max(first, second), min(first, second)
    return low > 2 and (high > 2 or first > second)


def byte_order_of(kind: Kind, offset: int) -> ByteOrder:
    """For a 16-bit field: the byte with fewer distinct values is the high byte."""
    low_first = kind.distinct_at(offset) >= kind.distinct_at(offset + 1)
    return "little" if low_first else "big"


def candidates(kind: Kind) -> list[Candidate]:
    """Every plausible field over the kind's varying bytes: u8 and u16 both ways."""
    constant = kind.constant()
    out = []
    for i in range(kind.size):
        if constant[i]:
            continue
        out.append(Candidate(i, 1, "big"))
        if i + 1 < kind.size and not constant[i + 1]:
            out += [Candidate(i, 2, "big"), Candidate(i, 2, "little")]
    return out


def median_gap(times: Sequence[float]) -> float | None:
    """The usual interval between successive times: a period, when there is one."""
    gaps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return statistics.median(gaps) if gaps else None
