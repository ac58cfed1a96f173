"""Typed messages: what the codec turns bytes into, and back.

Commands go from the host to the device; reports come back. The fields of
``Status`` are the quantities a controller can act on, each with its unit in
its name. Only fields a spec marks as documented land in them: anything whose
layout is not public goes to ``undocumented`` and is never trusted for safety.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, TypeAdapter

from gunctl.datafile import DataModel
from gunctl.heads import Head


class SetSpeed(DataModel):
    kind: Literal["set_speed"] = "set_speed"
    ppm: int = Field(ge=0)


class SetLevel(DataModel):
    kind: Literal["set_level"] = "set_level"
    level: int = Field(ge=1)


class Stop(DataModel):
    kind: Literal["stop"] = "stop"


class Keepalive(DataModel):
    kind: Literal["keepalive"] = "keepalive"


class StatusRequest(DataModel):
    kind: Literal["status_request"] = "status_request"


class VersionRequest(DataModel):
    kind: Literal["version_request"] = "version_request"


Command = Annotated[
    SetSpeed | SetLevel | Stop | Keepalive | StatusRequest | VersionRequest,
    Field(discriminator="kind"),
]

# The commands that carry no value, made once: one of each serves every gun (a keepalive
# goes out five times a second per gun), and the spec loader checks each one a spec has.
STOP, KEEPALIVE, STATUS_REQUEST, VERSION_REQUEST = (
    Stop(),
    Keepalive(),
    StatusRequest(),
    VersionRequest(),
)
VALUELESS: tuple[Command, ...] = (STOP, KEEPALIVE, STATUS_REQUEST, VERSION_REQUEST)


class _Report(DataModel):
    undocumented: dict[str, int | str] = Field(default_factory=dict)  # ints, or hex for bytes


class Status(_Report):
    kind: Literal["status"] = "status"
    running: bool | None = None
    speed_ppm: float | None = None
    level: int | None = None
    current_a: float | None = None
    force_n: float | None = None
    temperature_c: float | None = None
    battery_pct: float | None = None
    head: Head | Literal["none"] | None = None  # "none": the device sees no head fitted
    faults: frozenset[str] = frozenset()
    seq: int | None = None


class Version(_Report):
    kind: Literal["version"] = "version"
    version: int = Field(ge=0)  # packed as major * 100 + minor * 10 + patch

    def __str__(self) -> str:
        return f"{self.version // 100}.{self.version % 100 // 10}.{self.version % 10}"


Report = Annotated[Status | Version, Field(discriminator="kind")]

COMMAND_ADAPTER: TypeAdapter[Command] = TypeAdapter(Command)
REPORT_ADAPTER: TypeAdapter[Report] = TypeAdapter(Report)

# Status attributes whose decoded value is a whole number or a flag
INTEGER_ATTRIBUTES = {"level", "seq", "ppm"}
BOOLEAN_ATTRIBUTES = {"running"}
STATUS_ATTRIBUTES = set(Status.model_fields) - {"kind", "undocumented"}
