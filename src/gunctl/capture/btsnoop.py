"""The btsnoop file format, read and written one record at a time.

Android's "Bluetooth HCI snoop log" and Linux's ``btmon -w`` both write
btsnoop: a 16-byte file header (``btsnoop\\0``, version 1, a datalink type)
and then records, each a 24-byte big-endian header (original length, included
length, flags, drops, microseconds since the year 0) and the packet bytes.
Android uses datalink 1002 (HCI H4: the first byte of each packet is its type,
flag bit 0 says which way it went); ``btmon`` uses 2001 (the Linux monitor:
the packet type and direction are an opcode in the flags' low 16 bits, the
adapter index in the high 16).

Written by hand rather than taken from a package: the maintained parser on
PyPI reads the whole file into memory and stops quietly at a truncated record,
and bumble's reader is part of a whole Bluetooth stack and knows no ``btmon``
files. A capture can run to hundreds of megabytes, and a cut-off one must say
where it is cut, so this reader streams and names the offset of every problem.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from enum import IntEnum
from typing import BinaryIO, NamedTuple

from gunctl.errors import GunctlError

MAGIC = b"btsnoop\0"
VERSION = 1
_FILE_HEADER = struct.Struct(">8sII")
_RECORD_HEADER = struct.Struct(">IIIIq")
# Microseconds from 0000-01-01 to 1970-01-01, the offset btsnoop timestamps carry
EPOCH_OFFSET_US = 0x00DCDDB30F2F8000
# No HCI packet is longer than an ACL packet with a 16-bit length plus its header
MAX_PACKET = 0xFFFF + 5
_CHUNK = 1 << 20


class Datalink(IntEnum):
    H4 = 1002  # Android: HCI UART framing, packet type in the first byte
    MONITOR = 2001  # Linux btmon: packet type in the record's flags


class PacketType(IntEnum):
    """HCI packet types as the H4 framing numbers them."""

    COMMAND = 0x01
    ACL = 0x02
    SCO = 0x03
    EVENT = 0x04
    ISO = 0x05


# btmon opcodes that carry an HCI packet: opcode -> (type, sent by the host)
_MONITOR_OPCODES = {
    2: (PacketType.COMMAND, True),
    3: (PacketType.EVENT, False),
    4: (PacketType.ACL, True),
    5: (PacketType.ACL, False),
    6: (PacketType.SCO, True),
    7: (PacketType.SCO, False),
    18: (PacketType.ISO, True),
    19: (PacketType.ISO, False),
}
_H4_TYPES = {t.value: t for t in PacketType}
_MONITOR_BY_PACKET = {value: opcode for opcode, value in _MONITOR_OPCODES.items()}


class CaptureError(GunctlError):
    """A file that is not a readable btsnoop capture; ``offset`` is where reading stopped."""

    reason = "invalid_capture"

    def __init__(self, offset: int, message: str) -> None:
        self.offset = offset
        self.detail = message
        super().__init__(f"offset {offset}: {message}")


class HciPacket(NamedTuple):
    """One HCI packet from a capture, without its H4 type byte.

    A named tuple rather than a dataclass: a capture holds millions of them,
    and a tuple is the cheapest immutable record Python builds.
    """

    offset: int  # where its record starts in the file
    time_us: int  # microseconds since 0000-01-01, as btsnoop stores it
    type: PacketType
    sent: bool  # True: host to controller; False: controller to host
    data: bytes
    cut: bool  # the capture kept fewer bytes than the packet had


def read_packets(stream: BinaryIO) -> Iterator[HciPacket]:
    """Every HCI packet of a btsnoop capture, in file order, reading as it goes.

    Raises CaptureError, naming the offset, for a file that is not btsnoop, a
    datalink this reader does not know, and a record that is cut short or
    whose lengths cannot be right.
    """
    head = stream.read(_FILE_HEADER.size)
    if len(head) < len(MAGIC) or not head.startswith(MAGIC):
        raise CaptureError(0, "not a btsnoop file (it does not start with 'btsnoop\\0')")
    if len(head) < _FILE_HEADER.size:
        raise CaptureError(len(head), "the file header is cut short")
    _, version, datalink = _FILE_HEADER.unpack(head)
    if version != VERSION:
        raise CaptureError(8, f"btsnoop version {version}; only version {VERSION} exists")
    if datalink not in iter(Datalink):
        raise CaptureError(
            12,
            f"datalink {datalink} is not one this reader knows "
            f"(1002: Android HCI H4, 2001: Linux btmon)",
        )
    monitor = datalink == Datalink.MONITOR
    base = _FILE_HEADER.size  # file offset of buf[0]
    buf, at = b"", 0  # a window of the file, read in large chunks; at: the next record in it
    unpack = _RECORD_HEADER.unpack_from
    while True:
        if len(buf) - at < 24:
            base, buf, at = base + at, _refill(stream, buf, at, 24), 0
            if not buf:
                return
            if len(buf) < 24:
                raise CaptureError(base, f"record header cut short ({len(buf)} of 24 bytes)")
        offset = base + at
        original, included, flags, _drops, time_us = unpack(buf, at)
        if included > original or included > MAX_PACKET:
            raise CaptureError(
                offset, f"record lengths cannot be right (included {included}, original {original})"
            )
        end = at + 24 + included
        if end > len(buf):
            base, buf, at = offset, _refill(stream, buf, at, 24 + included), 0
            end = 24 + included
            if end > len(buf):
                have = len(buf) - 24
                raise CaptureError(
                    offset, f"record cut short ({have} of {included} bytes): the file is truncated"
                )
        packet = _packet(offset, monitor, flags, time_us, buf[at + 24 : end], included < original)
        at = end
        if packet is not None:
            yield packet


def _refill(stream: BinaryIO, buf: bytes, at: int, need: int) -> bytes:
    """The unread rest of ``buf`` and a chunk more of the file (more if ``need`` asks)."""
    rest = buf[at:]
    more = stream.read(max(_CHUNK, need - len(rest)))
    return rest + more if more else rest


def _packet(
    offset: int, monitor: bool, flags: int, time_us: int, data: bytes, cut: bool
) -> HciPacket | None:
    if monitor:
        kind = _MONITOR_OPCODES.get(flags & 0xFFFF)
        if kind is None:
            return None  # adapter index, system notes, management traffic
        return HciPacket(offset, time_us, kind[0], kind[1], data, cut)
    if not data:
        raise CaptureError(offset, "empty record: an H4 packet needs at least its type byte")
    kind_ = _H4_TYPES.get(data[0])
    if kind_ is None:
        raise CaptureError(offset, f"unknown HCI packet type 0x{data[0]:02x}")
    return HciPacket(offset, time_us, kind_, not flags & 1, data[1:], cut)


class BtsnoopWriter:
    """Writes packets as a btsnoop capture, in either datalink."""

    def __init__(self, stream: BinaryIO, datalink: Datalink = Datalink.H4) -> None:
        self._stream = stream
        self._datalink = datalink
        stream.write(_FILE_HEADER.pack(MAGIC, VERSION, datalink))

    def write(self, time_us: int, type_: PacketType, sent: bool, data: bytes) -> None:
        """One packet; ``sent`` is True for host to controller."""
        if self._datalink is Datalink.MONITOR:
            flags, body = _MONITOR_BY_PACKET[(type_, sent)], data
        else:
            command_or_event = type_ in (PacketType.COMMAND, PacketType.EVENT)
            flags = (0 if sent else 1) | (2 if command_or_event else 0)
            body = bytes([type_]) + data
        self._stream.write(_RECORD_HEADER.pack(len(body), len(body), flags, 0, time_us) + body)
