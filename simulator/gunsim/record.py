"""``gunsim record``: a simulated session written as the capture a phone would take.

A bare host drives a simulated gun through a short session (version request
where the spec has one, a few speeds or levels, stop), and every frame it
wrote and every notification it got is written as a btsnoop file with the HCI
H4 datalink Android uses: an LE connection, the GATT discovery a client does
(services, characteristic declarations, the notification descriptor, so the
reader can name each handle's UUID), the session's ATT traffic in ACL packets
of at most 27 bytes (the LE default, so longer frames span several packets),
and the disconnection. The same spec, seed and plan give the same bytes.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import looptime

from gunctl.capture.att import (
    CCCD,
    CHARACTERISTIC,
    FIND_INFO_RSP,
    NOTIFY,
    PRIMARY_SERVICE,
    READ_BY_GROUP_RSP,
    READ_BY_TYPE_REQ,
    READ_BY_TYPE_RSP,
    WRITE_CMD,
    WRITE_REQ,
)
from gunctl.capture.btsnoop import EPOCH_OFFSET_US, BtsnoopWriter, Datalink, PacketType
from gunctl.clock import Clock
from gunctl.specs.messages import Command, SetLevel, SetSpeed, Stop, VersionRequest
from gunctl.specs.models import CommandKind, DeviceSpec
from gunsim.device import SimDevice
from gunsim.host import Host
from gunsim.person import RandomPerson
from gunsim.radio import COMMAND, TELEMETRY, gatt_table

CONNECTION = 0x0040
ACL_MTU = 27  # LE ACL data bytes per packet without data length extension
START_UNIX = 1_767_225_600  # 2026-01-01: fixed, so a recording is reproducible
PEER = bytes.fromhex("5566778899AA")  # the simulated gun's address, little-endian

# characteristic properties, by BlueZ's flag names
_PROPERTIES = {"read": 0x02, "write-without-response": 0x04, "write": 0x08, "notify": 0x10}
_WRITE_RSP = 0x13
_READ_BY_GROUP_REQ = 0x10
_FIND_INFO_REQ = 0x04
_MTU_REQ, _MTU_RSP = 0x02, 0x03


@dataclass(frozen=True)
class Frame:
    """One ATT PDU of the session: when, which way, the bytes."""

    at: float  # seconds since the connection
    sent: bool  # True: the host (phone) sent it
    pdu: bytes


def plan(spec: DeviceSpec) -> list[Command]:
    """The setpoints a recorded session goes through: the spread of the device's range."""
    levels = spec.capabilities.levels_ppm
    if levels is not None:
        return [SetLevel(level=n) for n in [*range(1, len(levels) + 1), 2]]
    speed = spec.capabilities.speed
    assert speed is not None
    span = speed.max_ppm - speed.min_ppm
    return [SetSpeed(ppm=speed.min_ppm + round(span * f / 100) * 10) for f in (0, 3, 10, 6, 1)]


def record_session(spec: DeviceSpec, *, seed: int = 0, hold_s: float = 2.0) -> list[Frame]:
    """A session's ATT traffic, run in virtual time: no real time passes, and the same
    spec, seed and hold give the same frames on any machine, however loaded."""
    loop = looptime.new_event_loop()
    try:
        return loop.run_until_complete(simulate(spec, seed=seed, hold_s=hold_s))
    finally:
        loop.close()


async def simulate(
    spec: DeviceSpec, *, seed: int = 0, hold_s: float = 2.0, scale: float = 1.0
) -> list[Frame]:
    """Run a session on a simulated gun and return its ATT traffic, discovery included."""
    clock = Clock(scale)
    async with SimDevice(spec, clock=clock, seed=seed, person=RandomPerson(seed)) as device:
        host = Host(device)
        await host.connect()
        opened = clock.now()
        await clock.sleep(0.05)  # let the host's listener subscribe before anything is asked
        if CommandKind.VERSION_REQUEST in spec.commands:
            await host.send(VersionRequest())
        host.start_keepalive()
        for command in [*plan(spec), Stop()]:
            await host.send(command)
            end = clock.now() + hold_s
            while clock.now() < end and host.link.connected:
                await host.tick()
        await host.close()
    frames = list(_discovery(spec))
    command_handle, telemetry_handle, _ = _value_handles(spec)
    for written in host.sent:
        at = written.at - opened + 1.0  # discovery takes the first second
        handle = struct.pack("<H", command_handle)
        op = WRITE_REQ if written.with_response else WRITE_CMD
        frames.append(Frame(at, True, bytes([op]) + handle + written.data))
        if written.with_response:
            frames.append(Frame(at + 0.0075, False, bytes([_WRITE_RSP])))
    for note in host.notes:
        pdu = bytes([NOTIFY]) + struct.pack("<H", telemetry_handle) + note.data
        frames.append(Frame(note.received_at - opened + 1.0, False, pdu))
    frames.sort(key=lambda f: f.at)
    return frames


def _uuid_bytes(uuid: str) -> bytes:
    """A UUID as ATT carries it: 2 bytes for a SIG short form, else 16, little-endian."""
    raw = bytes.fromhex(uuid.replace("-", ""))
    if raw[4:] == bytes.fromhex("00001000800000805f9b34fb") and raw[:2] == b"\0\0":
        return raw[2:4][::-1]
    return raw[::-1]


def _value_handles(spec: DeviceSpec) -> tuple[int, int, int]:
    """The command value, telemetry value and telemetry notification-switch handles."""
    chars = {c.role: c for s in gatt_table(spec) for c in s.characteristics}
    command, telemetry = chars[COMMAND], chars[TELEMETRY]
    assert telemetry.cccd_handle is not None
    return command.value_handle, telemetry.value_handle, telemetry.cccd_handle


def _discovery(spec: DeviceSpec) -> Iterator[Frame]:
    """What a GATT client does after connecting, and what the gun answers.

    The handles are those every simulated radio serves (``gunsim.radio``).
    """
    t = 0.05
    yield Frame(t, True, bytes([_MTU_REQ]) + struct.pack("<H", 247))
    yield Frame(t + 0.01, False, bytes([_MTU_RSP]) + struct.pack("<H", 247))
    table = gatt_table(spec)
    for service in table:  # one response per service: entry sizes may differ
        t += 0.05
        last = max(max(c.value_handle, c.cccd_handle or 0) for c in service.characteristics)
        request = struct.pack("<HHH", service.handle, 0xFFFF, PRIMARY_SERVICE)
        yield Frame(t, True, bytes([_READ_BY_GROUP_REQ]) + request)
        entry = struct.pack("<HH", service.handle, last) + _uuid_bytes(service.uuid)
        yield Frame(t + 0.01, False, bytes([READ_BY_GROUP_RSP, len(entry)]) + entry)
    for char in (c for s in table for c in s.characteristics):
        t += 0.05
        request = struct.pack("<HHH", char.handle, 0xFFFF, CHARACTERISTIC)
        yield Frame(t, True, bytes([READ_BY_TYPE_REQ]) + request)
        props = sum(_PROPERTIES[f] for f in char.flags)
        entry = struct.pack("<HBH", char.handle, props, char.value_handle)
        entry += _uuid_bytes(char.uuid)
        yield Frame(t + 0.01, False, bytes([READ_BY_TYPE_RSP, len(entry)]) + entry)
        if char.cccd_handle is not None:
            t += 0.05
            span = struct.pack("<HH", char.cccd_handle, char.cccd_handle)
            yield Frame(t, True, bytes([_FIND_INFO_REQ]) + span)
            found = struct.pack("<HH", char.cccd_handle, CCCD)
            yield Frame(t + 0.01, False, bytes([FIND_INFO_RSP, 1]) + found)
    _, _, cccd = _value_handles(spec)
    t += 0.05
    yield Frame(t, True, bytes([WRITE_REQ]) + struct.pack("<H", cccd) + b"\x01\x00")
    yield Frame(t + 0.01, False, bytes([_WRITE_RSP]))


def _acl(pdu: bytes, sent: bool) -> Iterator[bytes]:
    """An ATT PDU in an L2CAP frame, cut into ACL packets of at most ACL_MTU bytes."""
    l2cap = struct.pack("<HH", len(pdu), 4) + pdu
    for at in range(0, len(l2cap), ACL_MTU):
        chunk = l2cap[at : at + ACL_MTU]
        boundary = 0x1 if at else (0x0 if sent else 0x2)
        yield struct.pack("<HH", CONNECTION | boundary << 12, len(chunk)) + chunk


def peer_address() -> str:
    """The simulated gun's address, as a capture shows it."""
    return ":".join(f"{b:02X}" for b in reversed(PEER))


def _advertising_report(name: str) -> bytes:
    """An LE Advertising Report event: the gun's advertisement, with its name, heard once."""
    encoded = name.encode()
    data = bytes([2, 0x01, 0x06, len(encoded) + 1, 0x09]) + encoded  # flags, complete name
    report = bytes([0x02, 1, 0x00, 0x00]) + PEER + bytes([len(data)]) + data + bytes([0xC9])
    return bytes([0x3E, len(report)]) + report


def write_capture(
    path: Path,
    frames: Iterable[Frame],
    datalink: Datalink = Datalink.H4,
    advertised: str | None = None,
) -> int:
    """Write ``frames`` (in time order) as a btsnoop file; returns the records written.

    With ``advertised``, the capture starts with the gun's advertisement under that name.
    """
    base = EPOCH_OFFSET_US + START_UNIX * 1_000_000
    records, last = 0, 0.0
    with path.open("wb") as stream:
        out = BtsnoopWriter(stream, datalink)
        if advertised is not None:
            out.write(base - 500_000, PacketType.EVENT, False, _advertising_report(advertised))
            records += 1
        connected = struct.pack("<BBHBB", 0x01, 0x00, CONNECTION, 0x00, 0x00) + PEER
        connected += struct.pack("<HHHB", 24, 0, 400, 0)
        out.write(base, PacketType.EVENT, False, bytes([0x3E, len(connected)]) + connected)
        for frame in frames:
            for packet in _acl(frame.pdu, frame.sent):
                out.write(base + round(frame.at * 1e6), PacketType.ACL, frame.sent, packet)
                records += 1
            last = frame.at
        end = base + round((last + 0.1) * 1e6)
        gone = struct.pack("<BHB", 0x00, CONNECTION, 0x16)
        out.write(end, PacketType.EVENT, False, bytes([0x05, len(gone)]) + gone)
    return records + 2
