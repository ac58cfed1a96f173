"""The frames of a capture a draft is made from, gathered in bounded memory.

A capture holds one device's protocol on two characteristics: the one the app
writes most to, and the one the device notifies most on. Descriptor writes
(turning notifications on) are not frames. Whatever the capture's size, at
most ``MAX_FRAMES`` frames per direction are kept, spread over the whole
capture, so drafting a huge capture costs no more memory than a long one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from gunctl.capture.att import CCCD, AttOp, AttReader, AttRecord, GattTable, short_uuid
from gunctl.specs.models import Direction

MAX_FRAMES = 20_000
_CCCD = short_uuid(CCCD)


@dataclass
class Channel:
    """The frames seen on one characteristic, in one direction."""

    handle: int
    uuid: str | None
    connection: int
    ops: Counter[AttOp] = field(default_factory=Counter)
    frames: list[tuple[float, bytes]] = field(default_factory=list)
    total: int = 0
    stride: int = 1  # keep every stride-th frame
    acked: dict[bytes, bool] = field(default_factory=dict)  # value -> written with response

    def add(self, record: AttRecord) -> None:
        self.total += 1
        self.ops[record.op] += 1
        if len(self.acked) < MAX_FRAMES:
            self.acked.setdefault(record.value, record.op is AttOp.WRITE)
        if (self.total - 1) % self.stride:
            return
        self.frames.append((record.t, record.value))
        if len(self.frames) >= MAX_FRAMES:  # thin out evenly, go on at half the rate
            del self.frames[1::2]
            self.stride *= 2


@dataclass
class CaptureFrames:
    """The command channel (host writes) and telemetry channel (device notifications)."""

    command: Channel | None
    telemetry: Channel | None
    table: GattTable
    name: str | None = None  # the device's advertised name, when the capture heard it

    @property
    def service(self) -> str | None:
        channel = self.command or self.telemetry
        return None if channel is None else self.table.service_of(channel.handle)


def gather(records: Iterable[AttRecord], reader: AttReader) -> CaptureFrames:
    """Split a capture's records into per-characteristic channels and pick the two busiest.

    ``reader`` is the one producing ``records``: once they are read, it knows the
    connection's GATT table and the device's advertised name.
    """
    channels: dict[tuple[Direction, str | int], Channel] = {}
    for record in records:
        if record.uuid == _CCCD:
            continue
        key = (record.direction, record.uuid or record.handle)
        channel = channels.get(key)
        if channel is None:
            channel = channels[key] = Channel(record.handle, record.uuid, record.connection)
        channel.add(record)

    def busiest(direction: Direction) -> Channel | None:
        found = [c for (d, _), c in channels.items() if d is direction]
        return max(found, key=lambda c: c.total, default=None)

    command, telemetry = busiest(Direction.HOST), busiest(Direction.DEVICE)
    anchor = command or telemetry
    if anchor is None:
        return CaptureFrames(command, telemetry, GattTable())
    table = reader.tables.get(anchor.connection, GattTable())
    peer = reader.peers.get(anchor.connection)
    return CaptureFrames(command, telemetry, table, reader.names.get(peer or ""))
