"""The firmware spec format: one YAML file describes one family of devices.

A spec says how to recognise a device, which GATT characteristics it uses, how
its frames are laid out, which commands and reports it understands, what it can
do, and a set of golden vectors. Adding a device family is a data change.
"""

from __future__ import annotations

import fnmatch
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, model_validator

from gunctl.datafile import DataModel
from gunctl.heads import Head
from gunctl.specs.checksums import ChecksumKind as ChecksumKind


def _uuid(value: object) -> object:
    """Accept a 16-bit SIG short form (``ffe0``, ``0xFFE0``) or a full 128-bit UUID."""
    if isinstance(value, int):
        value = f"{value:04x}"
    if not isinstance(value, str):
        return value
    text = value.lower().removeprefix("0x")
    if len(text) == 4:
        return f"0000{text}-0000-1000-8000-00805f9b34fb"
    return text


Uuid = Annotated[
    str, BeforeValidator(_uuid), Field(pattern=r"^[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
]
HexBytes = Annotated[str, Field(pattern=r"^\s*([0-9A-Fa-f]{2}\s*)+$")]


def hex_to_bytes(text: str) -> bytes:
    return bytes.fromhex("".join(text.split()))


class ManufacturerData(DataModel):
    company_id: int = Field(ge=0, le=0xFFFF)
    prefix: HexBytes | None = None  # the data must start with these bytes

    def matches(self, data: dict[int, bytes]) -> bool:
        value = data.get(self.company_id)
        if value is None:
            return False
        return self.prefix is None or value.startswith(hex_to_bytes(self.prefix))


class Identity(DataModel):
    """How a device is recognised from its advertisement (buttplug's matching order)."""

    names: list[str] = Field(default_factory=list)  # exact names or `*` wildcards
    services: list[Uuid] = Field(default_factory=list)
    manufacturer_data: list[ManufacturerData] = Field(default_factory=list)

    def exact_name(self, name: str) -> bool:
        return name in [n for n in self.names if "*" not in n]

    def wildcard_name(self, name: str) -> bool:
        return any(fnmatch.fnmatchcase(name, n) for n in self.names if "*" in n)


class BatteryService(DataModel):
    service: Uuid = "180f"
    characteristic: Uuid = "2a19"


class Gatt(DataModel):
    service: Uuid
    command: Uuid  # host writes here
    telemetry: Uuid  # device notifies here
    battery: BatteryService | None = None  # the standard Battery Service, when the device has it


class Checksum(DataModel):
    kind: ChecksumKind
    start: int = Field(ge=0)  # first covered byte
    # last covered byte is the end of the frame, the checksum itself excluded
    # when it trails the frame
    byte_order: Literal["big", "little"] | None = None  # defaults to the frame's


class Part(StrEnum):
    HEADER = "header"
    CHECKSUM = "checksum"
    OPCODE = "opcode"
    LENGTH = "length"  # one byte: the number of payload bytes
    PAYLOAD = "payload"


class Frame(DataModel):
    """The shape every frame of the family shares, in both directions."""

    parts: list[Part]
    host_header: HexBytes  # starts every frame the host writes
    device_header: HexBytes  # starts every frame the device notifies
    checksum: Checksum | None = None
    byte_order: Literal["big", "little"] = "big"

    @model_validator(mode="after")
    def _parts_once(self) -> Frame:
        for part in Part:
            if self.parts.count(part) > 1:
                raise ValueError(f"part {part.value!r} appears more than once")
        for needed in (Part.HEADER, Part.OPCODE, Part.PAYLOAD):
            if needed not in self.parts:
                raise ValueError(f"parts must include {needed.value!r}")
        if (self.checksum is None) != (Part.CHECKSUM not in self.parts):
            raise ValueError("a checksum part needs a checksum section, and the other way round")
        if len(hex_to_bytes(self.host_header)) != len(hex_to_bytes(self.device_header)):
            raise ValueError("host_header and device_header must be the same length")
        return self


class FieldType(StrEnum):
    U8 = "u8"
    I8 = "i8"
    U16 = "u16"
    I16 = "i16"
    U32 = "u32"
    I32 = "i32"
    BYTES = "bytes"

    @property
    def size(self) -> int:
        return _FIELD_SIZES[self.value]

    @property
    def signed(self) -> bool:
        return self.value.startswith("i")


_FIELD_SIZES = {"u8": 1, "i8": 1, "u16": 2, "i16": 2, "u32": 4, "i32": 4, "bytes": 0}


class LatchClear(StrEnum):
    """What clears a fault flag the firmware latches."""

    NEXT_START = "next_start"  # stays raised, motor stopped, until the next start command


class FieldSpec(DataModel):
    """One field of a payload.

    ``name`` is either an attribute of the typed message (``ppm``, ``temperature_c``,
    ...) or, with ``const``, a fixed value the message always carries.
    """

    name: str
    type: FieldType
    size: int | None = Field(default=None, ge=1)  # bytes fields only
    byte_order: Literal["big", "little"] | None = None  # defaults to the frame's
    scale: float = 1.0  # value = raw * scale
    const: int | None = None
    documented: bool = True  # false: the layout is a guess or unknown; never trusted
    values: dict[int, str] | None = None  # raw code -> name (heads)
    flags: dict[int, str] | None = None  # bit number -> name (faults)
    # flags the firmware keeps raised after the event that set them, and what clears them
    latched: dict[str, LatchClear] | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> FieldSpec:
        if (self.type is FieldType.BYTES) != (self.size is not None):
            raise ValueError("size is given for bytes fields and only for them")
        unknown = set(self.latched or ()) - set((self.flags or {}).values())
        if unknown:
            raise ValueError(f"latched names flags this field does not have: {sorted(unknown)}")
        if self.type is FieldType.BYTES and self.documented:
            raise ValueError("a raw bytes field is opaque: mark it documented: false")
        return self

    @property
    def width(self) -> int:
        return self.size if self.size is not None else self.type.size


class MessageSpec(DataModel):
    opcode: int = Field(ge=0, le=0xFF)
    fields: list[FieldSpec] = Field(default_factory=list)
    with_response: bool = True  # host commands: GATT write with or without response
    # a stop the firmware also takes written without response: gunctl writes it that way
    # (one connection event sooner, never behind a request awaiting its answer) and again
    # on each status frame until one reports the motor not running
    response_optional: bool = False
    note: str | None = None

    @property
    def payload_size(self) -> int:
        return sum(f.width for f in self.fields)


class CommandKind(StrEnum):
    SET_SPEED = "set_speed"  # continuous speed, field `ppm`
    SET_LEVEL = "set_level"  # discrete level, field `level` (1..n)
    STOP = "stop"
    KEEPALIVE = "keepalive"
    STATUS_REQUEST = "status_request"
    VERSION_REQUEST = "version_request"


class ReportKind(StrEnum):
    STATUS = "status"
    VERSION = "version"


class SpeedRange(DataModel):
    """Continuous speed in percussions per minute (one motor turn is one percussion)."""

    min_ppm: int = Field(gt=0)  # the lowest speed the controller asks for
    max_ppm: int = Field(gt=0)  # the highest speed the controller asks for
    firmware_max_ppm: int = Field(gt=0)  # what the firmware accepts; set_speed above is refused

    @model_validator(mode="after")
    def _ordered(self) -> SpeedRange:
        if not self.min_ppm <= self.max_ppm <= self.firmware_max_ppm:
            raise ValueError("need min_ppm <= max_ppm <= firmware_max_ppm")
        return self


class KeepaliveStrategy(StrEnum):
    NONE = "none"  # the firmware keeps running without traffic
    FIXED = "fixed"  # send the spec's keepalive command
    REPEAT_LAST = "repeat_last"  # send the last command again


class KeepalivePolicy(DataModel):
    """How the host feeds the firmware watchdog (the frame itself is ``messages.Keepalive``)."""

    strategy: KeepaliveStrategy
    period_s: float | None = Field(default=None, gt=0)  # how often the host sends it
    timeout_s: float | None = Field(default=None, gt=0)  # firmware stops the motor after this

    @model_validator(mode="after")
    def _periods(self) -> KeepalivePolicy:
        needs = self.strategy is not KeepaliveStrategy.NONE
        if needs and (self.period_s is None or self.timeout_s is None):
            raise ValueError("a keepalive strategy needs period_s and timeout_s")
        if needs and self.period_s and self.timeout_s and self.period_s * 2 > self.timeout_s:
            raise ValueError("period_s must be at most half of timeout_s")
        return self


class TelemetryMode(StrEnum):
    STREAM = "stream"  # the device notifies status on its own
    POLL = "poll"  # the host sends status_request and the device answers


class TelemetryPolicy(DataModel):
    """How status frames arrive: streamed by the device or polled by the host, how often."""

    mode: TelemetryMode
    period_s: float = Field(gt=0)  # notification period, or how often the host polls


class Capabilities(DataModel):
    speed: SpeedRange | None = None
    levels_ppm: list[int] | None = None  # the ppm of level 1, 2, ... in order
    keepalive: KeepalivePolicy
    telemetry: TelemetryPolicy
    auto_off_s: float | None = Field(default=None, gt=0)
    temperature_limit_c: float | None = None  # firmware thermal cutoff
    stall_force_n: float | None = Field(default=None, gt=0)
    heads: list[Head] = Field(default_factory=list)  # heads the device can detect

    @model_validator(mode="after")
    def _one_speed_model(self) -> Capabilities:
        if (self.speed is None) == (self.levels_ppm is None):
            raise ValueError("give exactly one of speed (continuous) or levels_ppm (discrete)")
        if self.levels_ppm is not None and (
            not self.levels_ppm or sorted(set(self.levels_ppm)) != self.levels_ppm
        ):
            raise ValueError("levels_ppm must be a non-empty, strictly increasing list")
        return self

    @property
    def max_ppm(self) -> int:
        if self.speed is not None:
            return self.speed.max_ppm
        assert self.levels_ppm is not None
        return self.levels_ppm[-1]


class Direction(StrEnum):
    HOST = "host"  # host to device: a command
    DEVICE = "device"  # device to host: a report


class Vector(DataModel):
    """A golden vector: exact bytes and what they mean."""

    direction: Direction
    hex: HexBytes
    message: dict[str, object]  # the typed message, as its JSON form
    note: str | None = None


class DeviceSpec(DataModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    title: str
    source: str  # where the protocol comes from
    identity: Identity
    gatt: Gatt
    frame: Frame
    commands: dict[CommandKind, MessageSpec]
    reports: dict[ReportKind, MessageSpec]
    capabilities: Capabilities
    vectors: list[Vector] = Field(default_factory=list)

    @model_validator(mode="after")
    def _commands_fit(self) -> DeviceSpec:
        caps = self.capabilities
        needed = {CommandKind.STOP}
        needed.add(CommandKind.SET_SPEED if caps.speed is not None else CommandKind.SET_LEVEL)
        if caps.keepalive.strategy is KeepaliveStrategy.FIXED:
            needed.add(CommandKind.KEEPALIVE)
        if caps.telemetry.mode is TelemetryMode.POLL:
            needed.add(CommandKind.STATUS_REQUEST)
        missing = sorted(k.value for k in needed - set(self.commands))
        if missing:
            raise ValueError(f"commands missing for these capabilities: {', '.join(missing)}")
        if ReportKind.STATUS not in self.reports:
            raise ValueError("reports must include status")
        return self

    @property
    def discrete(self) -> bool:
        return self.capabilities.levels_ppm is not None

    @property
    def latched_faults(self) -> dict[str, LatchClear]:
        """The documented fault flags that stay raised after their event, and what clears each."""
        for f in self.reports[ReportKind.STATUS].fields:
            if f.name == "faults" and f.documented and f.latched:
                return dict(f.latched)
        return {}

    @property
    def documented_fields(self) -> set[str]:
        """Status fields the controller may rely on."""
        return {f.name for f in self.reports[ReportKind.STATUS].fields if f.documented}
