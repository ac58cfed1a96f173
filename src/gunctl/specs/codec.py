"""Bytes to typed messages and back, driven only by a DeviceSpec, with no I/O.

The host encodes commands and decodes reports; the simulator does the mirror
image (decodes commands, encodes reports) from the same spec, so both sides of
every protocol are exercised by one piece of code. Anything handed to a decode
method either becomes a message or raises DecodeError, never anything else.
"""

from __future__ import annotations

import contextlib
import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from gunctl.specs.checksums import checksum
from gunctl.specs.messages import (
    BOOLEAN_ATTRIBUTES,
    COMMAND_ADAPTER,
    INTEGER_ATTRIBUTES,
    REPORT_ADAPTER,
    Command,
    Report,
    SetLevel,
    SetSpeed,
    Status,
    Version,
)
from gunctl.specs.models import (
    CommandKind,
    DeviceSpec,
    FieldSpec,
    FieldType,
    MessageSpec,
    Part,
    ReportKind,
    hex_to_bytes,
)

T = TypeVar("T")


class DecodeFailure(StrEnum):
    TOO_SHORT = "too_short"
    BAD_HEADER = "bad_header"
    BAD_CHECKSUM = "bad_checksum"
    BAD_LENGTH = "bad_length"
    UNKNOWN_OPCODE = "unknown_opcode"
    BAD_VALUE = "bad_value"


class DecodeError(ValueError):
    """Bytes that are not a valid frame of this spec; ``reason`` says which check failed.

    Not a GunctlError, because it never reaches a user: every caller takes it
    as a verdict on one frame. The Supervisor counts and logs a bad telemetry
    frame (``bad_frames`` in the state) and reads on; the spec loader turns a
    golden vector's into a FILE:LINE problem of an InvalidFileError; the
    capture tools tally it per frame.
    """

    def __init__(self, reason: DecodeFailure, detail: str, opcode: int | None = None) -> None:
        self.reason = reason
        self.opcode = opcode  # the frame's opcode, for an unknown one
        super().__init__(f"{reason.value}: {detail}")


class EncodeError(ValueError):
    """A message this spec cannot carry, or a value outside what its fields hold.

    Not a GunctlError, because it never reaches a user: loading a spec encodes
    every command the controller may send it, at both ends of the setpoint
    range, and a spec that cannot carry one is an InvalidFileError naming the
    line (``gunctl.specs.loader``); the controller clamps every setpoint into
    that range. The capture tools take it as a verdict on one frame.
    """


_STRUCT = {"u8": "B", "i8": "b", "u16": "H", "i16": "h", "u32": "I", "i32": "i"}


@dataclass(frozen=True)
class _Field:
    """A payload field compiled once: its spec, its position, its struct and its value."""

    spec: FieldSpec
    offset: int
    packer: struct.Struct | None  # None for raw bytes fields
    end: int  # offset + width
    value: Callable[[Any], Any]  # raw -> the message's value (documented fields)


@dataclass(frozen=True)
class _Shape:
    """What choosing a message by its payload and reading it needs, worked out once per message."""

    kind: str
    message: MessageSpec
    size: int  # payload bytes
    consts: int  # fields with a constant value: the more, the more specific the message
    raws: Callable[[bytes], tuple[Any, ...]]  # payload -> every field's raw value, in order
    # (place in ``raws``, name, documented, value) of each field without a constant
    reads: tuple[tuple[int, str, bool, Callable[[Any], Any]], ...]


@dataclass(frozen=True)
class _Checksum:
    """A frame's checksum, resolved once: its function, what it covers, how it is written."""

    function: Callable[[bytes], int]
    start: int  # first covered byte
    trailing: int  # bytes after the covered ones: the checksum itself, when it ends the frame
    size: int
    order: Literal["big", "little"]


@dataclass(frozen=True)
class _Layout:
    """Byte positions of the frame parts around a payload of variable size."""

    prefix: tuple[Part, ...]
    suffix: tuple[Part, ...]
    header_size: int
    checksum_size: int

    def size(self, part: Part) -> int:
        return {
            Part.HEADER: self.header_size,
            Part.CHECKSUM: self.checksum_size,
            Part.OPCODE: 1,
            Part.LENGTH: 1,
        }[part]

    @functools.cached_property
    def head(self) -> int:
        """Bytes before the payload."""
        return sum(self.size(p) for p in self.prefix)

    @functools.cached_property
    def tail(self) -> int:
        """Bytes after the payload."""
        return sum(self.size(p) for p in self.suffix)

    @property
    def overhead(self) -> int:
        return self.head + self.tail

    @functools.cached_property
    def _offsets(self) -> dict[Part, int]:
        """Prefix parts from the start (>= 0), suffix parts from the end (< 0)."""
        out = {p: sum(self.size(q) for q in self.prefix[:i]) for i, p in enumerate(self.prefix)}
        for i, p in enumerate(self.suffix):
            out[p] = -sum(self.size(q) for q in self.suffix[i:])
        return out

    def offset(self, part: Part, total: int) -> int:
        """Where ``part`` starts in a frame of ``total`` bytes."""
        at = self._offsets[part]
        return at if at >= 0 else total + at


class Codec:
    def __init__(self, spec: DeviceSpec) -> None:
        self.spec = spec
        frame = spec.frame
        split = frame.parts.index(Part.PAYLOAD)
        self._layout = _Layout(
            prefix=tuple(frame.parts[:split]),
            suffix=tuple(frame.parts[split + 1 :]),
            header_size=len(hex_to_bytes(frame.host_header)),
            checksum_size=frame.checksum.kind.size if frame.checksum else 0,
        )
        self._host_header = hex_to_bytes(frame.host_header)
        self._device_header = hex_to_bytes(frame.device_header)
        self._has_length = Part.LENGTH in frame.parts
        # the checksum's function, what it covers and how it is written, worked out once
        self._checksum = (
            None
            if frame.checksum is None
            else _Checksum(
                functools.partial(checksum, frame.checksum.kind),
                frame.checksum.start,
                self._layout.checksum_size if self._layout.suffix[-1:] == (Part.CHECKSUM,) else 0,
                frame.checksum.kind.size,
                frame.checksum.byte_order or frame.byte_order,
            )
        )
        self._with_response = {k.value: m.with_response for k, m in spec.commands.items()}
        self._fields = {
            id(m): self._compile(m) for m in [*spec.commands.values(), *spec.reports.values()]
        }
        # each opcode's candidate messages, per direction: telemetry is decoded 25 times a
        # second per gun, so nothing about a message is worked out again per frame
        self._commands = self._by_opcode([(k.value, m) for k, m in spec.commands.items()])
        self._reports = self._by_opcode([(k.value, m) for k, m in spec.reports.items()])

    def _by_opcode(self, messages: list[tuple[str, MessageSpec]]) -> dict[int, list[_Shape]]:
        out: dict[int, list[_Shape]] = {}
        for kind, m in messages:
            consts = sum(f.const is not None for f in m.fields)
            fields = self._fields[id(m)]
            reads = tuple(
                (i, f.spec.name, f.spec.documented, _checked(kind, f))
                for i, f in enumerate(fields)
                if f.spec.const is None
            )
            shape = _Shape(kind, m, m.payload_size, consts, self._reader(fields), reads)
            out.setdefault(m.opcode, []).append(shape)
        return out

    @staticmethod
    def _reader(fields: list[_Field]) -> Callable[[bytes], tuple[Any, ...]]:
        """Every field of a payload in one unpacking when they share a byte order (the usual)."""
        orders = {f.packer.format[0] for f in fields if f.packer is not None}
        if len(orders) <= 1:
            codes = "".join(
                f"{f.end - f.offset}s" if f.packer is None else f.packer.format[1:] for f in fields
            )
            whole = struct.Struct((orders.pop() if orders else "<") + codes)
            return whole.unpack_from
        return lambda payload: tuple(
            payload[f.offset : f.end]
            if f.packer is None
            else f.packer.unpack_from(payload, f.offset)[0]
            for f in fields
        )

    def _compile(self, message: MessageSpec) -> list[_Field]:
        out, at = [], 0
        for field in message.fields:
            order = field.byte_order or self.spec.frame.byte_order
            packer = (
                None
                if field.type is FieldType.BYTES
                else struct.Struct((">" if order == "big" else "<") + _STRUCT[field.type.value])
            )
            out.append(_Field(field, at, packer, at + field.width, _converter(field)))
            at += field.width
        return out

    # -- the four directions -------------------------------------------------

    def encode_command(self, command: Command) -> bytes:
        kind = CommandKind(command.kind)
        message = self.spec.commands.get(kind)
        if message is None:
            raise EncodeError(f"{self.spec.name} has no {kind.value} command")
        self._check_setpoint(command)
        return self._frame(self._host_header, message, self._payload(message, command))

    def decode_command(self, data: bytes) -> Command:
        opcode, payload = self._unframe(data, self._host_header)
        shape = self._choose(self._commands.get(opcode, []), payload, opcode)
        command = _validated(COMMAND_ADAPTER, self._values(shape, payload), shape)
        try:
            self._check_setpoint(command)
        except EncodeError as exc:
            raise DecodeError(DecodeFailure.BAD_VALUE, str(exc)) from exc
        return command

    def encode_report(self, report: Report) -> bytes:
        message = self.spec.reports.get(ReportKind(report.kind))
        if message is None:
            raise EncodeError(f"{self.spec.name} has no {report.kind} report")
        return self._frame(self._device_header, message, self._payload(message, report))

    def decode_report(self, data: bytes) -> Report:
        opcode, payload = self._unframe(data, self._device_header)
        shape = self._choose(self._reports.get(opcode, []), payload, opcode)
        return _validated(REPORT_ADAPTER, self._values(shape, payload), shape)

    def decode_telemetry(self, data: bytes) -> dict[str, Any] | Version:
        """A status frame's values, as ``Status`` would hold them; any other report validated.

        The Supervisor's hot path: every gun decodes 25 frames a second, and
        building a pydantic ``Status`` for each (its validator, then reading the
        fields back out) was a fifth of a frame's cost. Nothing is left unchecked
        by skipping it: a status frame's values come only from the converters
        compiled from the spec, whose output types are fixed (a float for a
        scaled field, an int for a whole number, a bool for a flag, a frozenset
        of names for flags), and the names a ``values`` field can take are put
        through ``Status``'s own validation once, when the codec is built
        (``_checked``), so a code whose name ``Status`` refuses is refused here
        too (``BAD_VALUE``). ``decode_report`` gives the same values as a
        validated ``Status``, for every edge (captures, tools, the simulator).
        """
        opcode, payload = self._unframe(data, self._device_header)
        shape = self._choose(self._reports.get(opcode, []), payload, opcode)
        values = self._values(shape, payload)
        if shape.kind == ReportKind.STATUS.value:
            return values
        report = _validated(REPORT_ADAPTER, values, shape)
        assert isinstance(report, Version)  # the only other report
        return report

    def with_response(self, command: Command) -> bool:
        return self._with_response[command.kind]

    # -- framing -------------------------------------------------------------

    def _frame(self, header: bytes, message: MessageSpec, payload: bytes) -> bytes:
        layout = self._layout
        pieces = {
            Part.HEADER: header,
            Part.OPCODE: bytes([message.opcode]),
            Part.LENGTH: bytes([len(payload)]),
            Part.PAYLOAD: payload,
            Part.CHECKSUM: bytes(layout.checksum_size),
        }
        frame = bytearray(b"".join(pieces[p] for p in self.spec.frame.parts))
        if self.spec.frame.checksum is not None:
            at = layout.offset(Part.CHECKSUM, len(frame))
            frame[at : at + layout.checksum_size] = self._checksum_bytes(bytes(frame))
        return bytes(frame)

    def _checksum_bytes(self, frame: bytes) -> bytes:
        """The checksum over the covered bytes: from its start to the end, itself excluded."""
        assert self._checksum is not None
        covered = frame[self._checksum.start : len(frame) - self._checksum.trailing]
        return self._checksum.function(covered).to_bytes(self._checksum.size, self._checksum.order)

    def _unframe(self, data: bytes, header: bytes) -> tuple[int, bytes]:
        layout = self._layout
        total = len(data)
        if total < layout.overhead:
            raise DecodeError(
                DecodeFailure.TOO_SHORT,
                f"{total} bytes, a frame has at least {layout.overhead}",
            )
        at = layout.offset(Part.HEADER, total)
        if data[at : at + len(header)] != header:
            raise DecodeError(DecodeFailure.BAD_HEADER, f"expected {header.hex(' ')}")
        payload = data[layout.head : total - layout.tail]
        if self._has_length:
            declared = data[layout.offset(Part.LENGTH, total)]
            if declared != len(payload):
                raise DecodeError(
                    DecodeFailure.BAD_LENGTH,
                    f"length byte says {declared}, payload is {len(payload)}",
                )
        if self._checksum is not None:
            at = layout.offset(Part.CHECKSUM, total)
            found = data[at : at + layout.checksum_size]
            expected = self._checksum_bytes(data)
            if found != expected:
                raise DecodeError(
                    DecodeFailure.BAD_CHECKSUM, f"found {found.hex()}, expected {expected.hex()}"
                )
        return data[layout.offset(Part.OPCODE, total)], payload

    # -- payloads ------------------------------------------------------------

    def _choose(self, candidates: list[_Shape], payload: bytes, opcode: int) -> _Shape:
        """Pick the message an opcode means; one whose constants all match wins.

        Two kinds may share an opcode (Theragun's stop is set speed with 0 rpm): the
        one with more matching constants is the more specific meaning.
        """
        if not candidates:
            raise DecodeError(DecodeFailure.UNKNOWN_OPCODE, f"opcode 0x{opcode:02x}", opcode)
        only = candidates[0]
        if len(candidates) == 1 and not only.consts and only.size == len(payload):
            return only  # the usual case: one message per opcode
        fitting = [
            shape
            for shape in candidates
            if shape.size == len(payload)
            and (not shape.consts or self._consts_match(shape, payload))
        ]
        if not fitting:
            sizes = sorted({shape.size for shape in candidates})
            raise DecodeError(
                DecodeFailure.BAD_LENGTH,
                f"opcode 0x{opcode:02x} with a {len(payload)}-byte payload (expected {sizes})",
            )
        return max(fitting, key=lambda shape: shape.consts)

    def _consts_match(self, shape: _Shape, payload: bytes) -> bool:
        return all(
            f.spec.const is None or raw == f.spec.const
            for f, raw in zip(self._fields[id(shape.message)], shape.raws(payload), strict=True)
        )

    def _values(self, shape: _Shape, payload: bytes) -> dict[str, Any]:
        values: dict[str, Any] = {}
        undocumented: dict[str, int | str] = {}
        raws = shape.raws(payload)
        for i, name, documented, value in shape.reads:
            raw = raws[i]
            if not documented:
                undocumented[name] = raw.hex() if isinstance(raw, bytes) else raw
                continue
            try:
                values[name] = value(raw)
            except KeyError:  # a code the field's values do not list
                raise DecodeError(
                    DecodeFailure.BAD_VALUE, f"{name} code {raw} is unknown"
                ) from None
        if undocumented:
            values["undocumented"] = undocumented
        return values

    def _payload(self, message: MessageSpec, value: BaseModel) -> bytes:
        data = value.model_dump()
        undocumented = data.get("undocumented", {})
        out = bytearray()
        for compiled in self._fields[id(message)]:
            field = compiled.spec
            if compiled.packer is None:
                raw_hex = undocumented.get(field.name)
                raw_bytes = bytes.fromhex(raw_hex) if isinstance(raw_hex, str) else b""
                out += raw_bytes[: field.width].ljust(field.width, b"\0")
                continue
            if field.const is not None:
                raw = field.const
            elif not field.documented:
                found = undocumented.get(field.name, 0)
                raw = found if isinstance(found, int) else 0
            else:
                raw = self._raw_value(field, data.get(field.name))
            try:
                out += compiled.packer.pack(raw)
            except struct.error as exc:
                raise EncodeError(f"{field.name}={raw} does not fit in {field.type.value}") from exc
        return bytes(out)

    def _raw_value(self, field: FieldSpec, value: Any) -> int:
        if value is None:
            return 0  # a quantity the sender does not know goes out as zero
        if field.flags is not None:
            unknown = set(value) - set(field.flags.values())
            if unknown:
                raise EncodeError(f"{field.name}: no bit for {sorted(unknown)}")
            return sum(1 << bit for bit, name in field.flags.items() if name in value)
        if field.values is not None:
            codes = {name: code for code, name in field.values.items()}
            if value not in codes:
                raise EncodeError(f"{field.name}: no code for {value!r}")
            return codes[value]
        return round(float(value) / field.scale)

    def _check_setpoint(self, command: Command) -> None:
        """Refuse a setpoint the device cannot take, wherever the bytes are made or read."""
        caps = self.spec.capabilities
        if isinstance(command, SetSpeed):
            if caps.speed is None:
                raise EncodeError(f"{self.spec.name} runs at discrete levels, not a speed")
            if command.ppm > caps.speed.firmware_max_ppm:
                raise EncodeError(
                    f"{command.ppm} ppm is above the firmware's {caps.speed.firmware_max_ppm}"
                )
        elif isinstance(command, SetLevel):
            if caps.levels_ppm is None:
                raise EncodeError(f"{self.spec.name} takes a speed, not a level")
            if command.level > len(caps.levels_ppm):
                raise EncodeError(
                    f"level {command.level} is above the top level {len(caps.levels_ppm)}"
                )


def _converter(field: FieldSpec) -> Callable[[Any], Any]:
    """How a raw field becomes its value, worked out once per field rather than per frame."""
    if field.flags is not None:
        bits = tuple(field.flags.items())
        return lambda raw: frozenset(n for b, n in bits if raw >> b & 1)
    if field.values is not None:
        return dict(field.values).__getitem__  # KeyError for a code it does not list
    if field.name in BOOLEAN_ATTRIBUTES:
        return lambda raw: raw != 0
    scale = field.scale
    if field.name in INTEGER_ATTRIBUTES:
        return int if scale == 1 else lambda raw: round(raw * scale)
    if scale == 1:
        return float
    return lambda raw: round(raw * scale, 9)  # no 25.200000000000003


def _checked(kind: str, field: _Field) -> Callable[[Any], Any]:
    """A field's value as its report holds it: a status name ``Status`` refuses is an unknown code.

    Each name a ``values`` field lists is validated once, here, so that
    ``Codec.decode_telemetry``, which builds no ``Status``, refuses what
    ``decode_report`` would refuse (``BAD_VALUE``).
    """
    spec = field.spec
    if kind != ReportKind.STATUS.value or spec.values is None or not spec.documented:
        return field.value
    accepted: dict[int, Any] = {}
    for code, name in spec.values.items():
        with contextlib.suppress(ValidationError):
            accepted[code] = getattr(Status.model_validate({spec.name: name}), spec.name)
    return accepted.__getitem__  # KeyError for a code it does not list or Status refuses


def _validated(adapter: TypeAdapter[T], values: dict[str, Any], shape: _Shape) -> T:
    values["kind"] = shape.kind
    try:
        return adapter.validate_python(values)
    except ValidationError as exc:
        raise DecodeError(DecodeFailure.BAD_VALUE, exc.errors()[0]["msg"]) from exc


def decode_battery_level(data: bytes) -> float:
    """The standard Battery Level characteristic (0x2A19): one byte, 0..100 percent."""
    if len(data) != 1:
        raise DecodeError(DecodeFailure.BAD_LENGTH, f"battery level is 1 byte, got {len(data)}")
    if data[0] > 100:
        raise DecodeError(DecodeFailure.BAD_VALUE, f"battery level {data[0]} is above 100")
    return float(data[0])


def encode_battery_level(percent: float) -> bytes:
    return bytes([max(0, min(100, round(percent)))])


__all__ = [
    "Codec",
    "DecodeError",
    "DecodeFailure",
    "EncodeError",
    "Status",
    "checksum",
    "decode_battery_level",
    "encode_battery_level",
]
