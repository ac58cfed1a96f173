"""From HCI packets to the ATT traffic a protocol is learnt from.

ACL packets are put back together into L2CAP frames (a long notification
spans several ACL packets; the packet-boundary flags say which one starts a
frame), per connection and per direction. Frames on the ATT channel (CID 4)
become records for the four operations that carry a device's protocol: write
request, write command, notification and indication. Along the way the GATT
discovery a client does after connecting (primary services, characteristic
declarations, descriptors) is remembered per connection, so that a handle gets
its characteristic's UUID when the capture saw the discovery.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import NamedTuple

from gunctl.capture.btsnoop import EPOCH_OFFSET_US, HciPacket, PacketType
from gunctl.specs.models import Direction

ATT_CID = 0x0004
# ATT opcodes
ERROR_RSP = 0x01
FIND_INFO_RSP = 0x05
READ_BY_TYPE_REQ = 0x08
READ_BY_TYPE_RSP = 0x09
READ_BY_GROUP_RSP = 0x11
WRITE_REQ = 0x12
WRITE_CMD = 0x52
NOTIFY = 0x1B
INDICATE = 0x1D
# GATT declaration types
PRIMARY_SERVICE = 0x2800
CHARACTERISTIC = 0x2803
CCCD = 0x2902
_DECLARATIONS = {0x2800, 0x2801, 0x2802, 0x2803}
# HCI events that open and close connections
_DISCONNECTION_COMPLETE = 0x05
_LE_META = 0x3E
_LE_CONNECTION_COMPLETE = (0x01, 0x0A)  # legacy and enhanced
# LE advertising reports, legacy and extended: subevent -> (address at, data length at),
# counted from the number of reports
_ADVERTISING_REPORTS = {0x02: (3, 9), 0x0D: (4, 24)}


class AttOp(StrEnum):
    WRITE = "write"  # write request: the device acknowledges it
    WRITE_CMD = "write_cmd"  # write command: no acknowledgement
    NOTIFY = "notify"
    INDICATE = "indicate"


_OPS = {
    WRITE_REQ: AttOp.WRITE,
    WRITE_CMD: AttOp.WRITE_CMD,
    NOTIFY: AttOp.NOTIFY,
    INDICATE: AttOp.INDICATE,
}


def uuid_text(raw: bytes) -> str:
    """A UUID as ATT carries it (little-endian, 2 or 16 bytes) in the 128-bit text form."""
    if len(raw) == 2:
        return f"0000{int.from_bytes(raw, 'little'):04x}-0000-1000-8000-00805f9b34fb"
    h = raw[::-1].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def _address(raw: bytes) -> str:
    return ":".join(f"{b:02X}" for b in reversed(raw))


def short_uuid(number: int) -> str:
    return uuid_text(number.to_bytes(2, "little"))


class AttRecord(NamedTuple):
    """One ATT write, notification or indication (a tuple: captures hold millions)."""

    t: float  # seconds since the first packet of the capture
    connection: int  # the HCI connection handle
    direction: Direction  # host: written by the phone or computer; device: sent by the gun
    op: AttOp
    handle: int
    uuid: str | None  # the characteristic's UUID, when the capture saw its discovery
    value: bytes
    offset: int  # file offset of the record that completed it

    def as_json(self) -> dict[str, object]:
        return {
            "t": round(self.t, 6),
            "connection": self.connection,
            "direction": self.direction.value,
            "op": self.op.value,
            "handle": self.handle,
            "uuid": self.uuid,
            "value": self.value.hex(),
        }


@dataclass
class GattTable:
    """What a connection's GATT discovery revealed: services and characteristic UUIDs."""

    services: list[tuple[int, int, str]] = field(default_factory=list)  # start, end, uuid
    characteristics: dict[int, str] = field(default_factory=dict)  # value handle -> uuid
    properties: dict[int, int] = field(default_factory=dict)  # value handle -> property bits
    descriptors: dict[int, str] = field(default_factory=dict)  # handle -> uuid
    uuids: dict[int, str] = field(default_factory=dict)  # both of the above, for lookups

    def name(self, handle: int, uuid: str, characteristic: bool) -> None:
        (self.characteristics if characteristic else self.descriptors)[handle] = uuid
        self.uuids[handle] = uuid

    def service_of(self, handle: int) -> str | None:
        return next((u for s, e, u in self.services if s <= handle <= e), None)


@dataclass
class _Connection:
    gatt: GattTable = field(default_factory=GattTable)
    pending: dict[bool, bytearray] = field(default_factory=dict)  # sent -> partial L2CAP frame
    asked_type: int | None = None  # attribute type of the last Read By Type request


class AttReader:
    """Turns HCI packets into ATT records, keeping state per connection."""

    def __init__(self) -> None:
        self.connections: dict[int, _Connection] = {}
        self.tables: dict[int, GattTable] = {}  # every connection's table, kept after it closes
        self.peers: dict[int, str] = {}  # connection handle -> peer address, when seen
        self.names: dict[str, str] = {}  # address -> advertised name, when seen
        self.skipped = 0  # ACL fragments that could not be placed (capture started mid-frame)
        self.cut = 0  # frames the capture itself kept only the start of (filtered snoop logs)
        self._first_us: int | None = None

    def records(self, packets: Iterable[HciPacket]) -> Iterator[AttRecord]:
        acl, event = PacketType.ACL, PacketType.EVENT
        for packet in packets:
            if self._first_us is None:
                self._first_us = packet.time_us
            if packet.type is acl:
                record = self._acl(packet)
                if record is not None:
                    yield record
            elif packet.type is event:
                self._event(packet.data)

    def started_at_unix(self) -> float | None:
        """When the capture's first packet was taken, in Unix seconds."""
        return None if self._first_us is None else (self._first_us - EPOCH_OFFSET_US) / 1e6

    def _connection(self, handle: int) -> _Connection:
        conn = self.connections.get(handle)
        if conn is None:
            conn = self.connections[handle] = _Connection()
            self.tables[handle] = conn.gatt
        return conn

    def _event(self, data: bytes) -> None:
        if len(data) < 2:
            return
        code = data[0]
        if code == _DISCONNECTION_COMPLETE and len(data) >= 5 and data[2] == 0:
            self.connections.pop(int.from_bytes(data[3:5], "little") & 0x0FFF, None)
        elif code == _LE_META and len(data) >= 13 and data[2] in _LE_CONNECTION_COMPLETE:
            if data[3] != 0:
                return  # the connection failed
            handle = int.from_bytes(data[4:6], "little") & 0x0FFF
            self.connections.pop(handle, None)  # a reused handle starts afresh
            self._connection(handle)
            self.peers[handle] = _address(data[8:14])
        elif code == _LE_META and len(data) >= 3 and data[2] in _ADVERTISING_REPORTS:
            self._advertisement(data[2], data[3:])

    def _advertisement(self, subevent: int, body: bytes) -> None:
        """The advertised name in a single-report LE advertising report, by address."""
        if not body or body[0] != 1:
            return  # several reports in one event lay their fields out side by side: skip
        at_address, at_length = _ADVERTISING_REPORTS[subevent]
        if len(body) <= at_length:
            return
        data = body[at_length + 1 : at_length + 1 + body[at_length]]
        while len(data) >= 2 and data[0]:
            size, kind = data[0], data[1]
            if kind in (0x08, 0x09):  # shortened or complete local name
                name = data[2 : size + 1].decode("utf-8", "replace")
                self.names[_address(body[at_address : at_address + 6])] = name
            data = data[size + 1 :]

    def _acl(self, packet: HciPacket) -> AttRecord | None:
        data = packet.data
        if len(data) < 4:
            self.skipped += 1
            return None
        handle = (data[0] | data[1] << 8) & 0x0FFF
        boundary = data[1] >> 4 & 0x3
        conn = self.connections.get(handle) or self._connection(handle)
        if boundary != 0x1 and len(data) >= 8:
            length = data[4] | data[5] << 8
            if len(data) - 8 >= length:  # the usual case: a whole L2CAP frame in one packet
                if conn.pending:
                    conn.pending.pop(packet.sent, None)
                if data[6] != ATT_CID or data[7] != 0 or length < 1:
                    return None
                return self._att(packet, handle, conn, data[8 : 8 + length])
        fragment = data[4:]
        if boundary == 0x1:  # a continuation
            buffer = conn.pending.get(packet.sent)
            if buffer is None:
                self.skipped += 1
                return None
            buffer += fragment
        else:
            buffer = conn.pending[packet.sent] = bytearray(fragment)
        if len(buffer) < 4:
            return None
        length = int.from_bytes(buffer[0:2], "little")
        if len(buffer) < length + 4 and not packet.cut:
            return None
        del conn.pending[packet.sent]
        cid = int.from_bytes(buffer[2:4], "little")
        if cid != ATT_CID or len(buffer) < 5:
            return None
        if len(buffer) < length + 4:  # the capture kept only its start: no value to trust
            self.cut += 1
            return None
        return self._att(packet, handle, conn, bytes(buffer[4 : length + 4]))

    def _att(
        self, packet: HciPacket, connection: int, conn: _Connection, pdu: bytes
    ) -> AttRecord | None:
        opcode = pdu[0]
        op = _OPS.get(opcode)
        if op is None:
            self._discovery(conn, opcode, pdu)
            return None
        if len(pdu) < 3:
            return None
        handle = pdu[1] | pdu[2] << 8
        return AttRecord(
            (packet.time_us - (self._first_us or 0)) / 1e6,
            connection,
            _DIRECTIONS[packet.sent],
            op,
            handle,
            conn.gatt.uuids.get(handle),
            pdu[3:],
            packet.offset,
        )

    def _discovery(self, conn: _Connection, opcode: int, pdu: bytes) -> None:
        gatt = conn.gatt
        if opcode == READ_BY_TYPE_REQ and len(pdu) in (7, 21):
            conn.asked_type = int.from_bytes(pdu[5:7], "little") if len(pdu) == 7 else None
        elif opcode == READ_BY_TYPE_RSP and conn.asked_type == CHARACTERISTIC and len(pdu) > 2:
            size = pdu[1]
            for at in range(2, len(pdu) - size + 1, size) if size in (7, 21) else ():
                entry = pdu[at : at + size]
                value_handle = int.from_bytes(entry[3:5], "little")
                gatt.properties[value_handle] = entry[2]
                gatt.name(value_handle, uuid_text(entry[5:]), characteristic=True)
        elif opcode == READ_BY_GROUP_RSP and len(pdu) > 2 and pdu[1] in (6, 20):
            size = pdu[1]
            for at in range(2, len(pdu) - size + 1, size):
                start, end = struct.unpack_from("<HH", pdu, at)
                gatt.services.append((start, end, uuid_text(pdu[at + 4 : at + size])))
        elif opcode == FIND_INFO_RSP and len(pdu) > 2 and pdu[1] in (1, 2):
            size = 4 if pdu[1] == 1 else 18
            for at in range(2, len(pdu) - size + 1, size):
                handle = int.from_bytes(pdu[at : at + 2], "little")
                uuid = uuid_text(pdu[at + 2 : at + size])
                if handle not in gatt.characteristics and uuid not in _DECLARATION_UUIDS:
                    gatt.name(handle, uuid, characteristic=False)


_DECLARATION_UUIDS = {short_uuid(n) for n in _DECLARATIONS}
_DIRECTIONS = {True: Direction.HOST, False: Direction.DEVICE}  # by "sent by the host"
