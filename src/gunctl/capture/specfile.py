"""Writing a drafted spec as a YAML document ``gunctl specs validate`` accepts.

The document follows the shipped specs' shape. Opcodes and constants are
written in hex, every report field is ``documented: false`` with a note of
what the capture showed, and the golden vectors are real frames from the
capture, each decoded by the drafted spec itself so that they hold both ways.
"""

from __future__ import annotations

import io
import itertools
import statistics
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.scalarint import HexInt

from gunctl.capture.infer import Candidate, Kind, Layout, byte_order_of, median_gap, split_fields
from gunctl.specs.codec import Codec, DecodeError, EncodeError
from gunctl.specs.models import CommandKind, DeviceSpec

if TYPE_CHECKING:
    from gunctl.capture.draft import Draft, Roles
    from gunctl.capture.frames import CaptureFrames

UNKNOWN_UUID = "00000000-0000-0000-0000-000000000000"  # the capture did not say

_REPEATS = 5  # identical setpoints in a row before they count as a keepalive


class SpecWriter:
    def __init__(self, roles: Roles, frames: CaptureFrames, layout: Layout, source: str) -> None:
        self.roles = roles
        self.frames = frames
        self.layout = layout
        self.source = source
        self.order = "big" if roles.set_field and roles.set_field.byte_order == "big" else "little"

    def document(self) -> dict[str, Any] | None:
        roles, frames = self.roles, self.frames
        if roles.status is None or CommandKind.STOP.value not in roles.commands:
            return None
        if roles.set_kind is None:
            return None
        service = frames.service
        command = frames.command.uuid if frames.command else None
        telemetry = frames.telemetry.uuid if frames.telemetry else None
        if not (service and command and telemetry):
            roles.out.warnings.append(
                "the capture has no GATT discovery for these handles: the UUIDs are "
                f"{UNKNOWN_UUID}; take them from `gunctl probe`"
            )
        doc: dict[str, Any] = {
            "name": roles.out.name,
            "title": f"Draft from {self.source}",
            "source": f"drafted by `gunctl specs draft` from {self.source}; nothing checked yet",
            "identity": {
                "names": [frames.name] if frames.name else [],
                "services": [service] if service else [],
            },
            "gatt": {
                "service": service or UNKNOWN_UUID,
                "command": command or UNKNOWN_UUID,
                "telemetry": telemetry or UNKNOWN_UUID,
            },
            "frame": self._frame(),
            "commands": self._commands(),
            "reports": {"status": self._status(roles.status)},
            "capabilities": self._capabilities(),
        }
        doc["vectors"] = self._vectors(doc)
        return doc

    def _frame(self) -> dict[str, Any]:
        layout, h = self.layout, self.layout.header_size
        assert self.frames.command is not None
        assert self.frames.telemetry is not None
        out: dict[str, Any] = {
            "parts": [p.value for p in layout.parts],
            "host_header": self.frames.command.frames[0][1][:h].hex(" ").upper(),
            "device_header": self.frames.telemetry.frames[0][1][:h].hex(" ").upper(),
        }
        fit = layout.checksum
        if fit is not None:
            out["checksum"] = {"kind": fit.kind.value, "start": fit.start}
            if fit.kind.size > 1 and fit.byte_order != self.order:
                out["checksum"]["byte_order"] = fit.byte_order
        out["byte_order"] = self.order
        return out

    # -- commands --------------------------------------------------------------

    def _commands(self) -> dict[str, Any]:
        roles = self.roles
        out: dict[str, Any] = {}
        for name, kind in roles.commands.items():
            setpoint = name in (CommandKind.SET_SPEED.value, CommandKind.SET_LEVEL.value)
            shares = name == CommandKind.STOP.value and roles.stop_shares_set
            if setpoint or shares:
                fields = self._setpoint_fields(kind, "level" if roles.level else "ppm", shares)
            else:
                fields = [self._const(kind, i) for i in range(kind.size)]
            message: dict[str, Any] = {"opcode": HexInt(kind.opcode, width=2)}
            if fields:
                message["fields"] = fields
            message["with_response"] = self._acked(kind)
            out[name] = message
        return out

    def _acked(self, kind: Kind) -> bool:
        assert self.frames.command is not None
        acked = self.frames.command.acked
        return any(acked.get(frame, False) for frame in kind.examples.values())

    def _const(self, kind: Kind, i: int) -> dict[str, Any]:
        first = kind.frames[0][1]
        return {"name": f"c{i}", "type": "u8", "const": HexInt(first[i], width=2)}

    def _setpoint_fields(self, kind: Kind, name: str, as_zero: bool) -> list[dict[str, Any]]:
        main = self.roles.set_field
        assert main is not None
        out: list[dict[str, Any]] = []
        i = 0
        while i < kind.size:
            if i == main.offset:
                field: dict[str, Any] = {"name": name, "type": "u16" if main.width == 2 else "u8"}
                if main.width == 2 and main.byte_order != self.order:
                    field["byte_order"] = main.byte_order
                if as_zero:
                    field["const"] = 0
                else:
                    field["note"] = f"guessed from the capture: {main.describe()}"
                out.append(field)
                i += main.width
            else:
                out.append(self._const(kind, i))
                i += 1
        return out

    # -- reports ---------------------------------------------------------------

    def _status(self, kind: Kind) -> dict[str, Any]:
        fields: list[dict[str, Any]] = []
        for at, width, varies in split_fields(kind):
            if not varies:
                value = kind.frames[0][1][at : at + width].hex(" ")
                fields.append(
                    {
                        "name": f"c{at}",
                        "type": "bytes",
                        "size": width,
                        "documented": False,
                        "note": f"constant {value} in every frame of the capture",
                    }
                )
                continue
            candidate = Candidate(at, width, "big")
            field: dict[str, Any] = {"name": f"f{at}", "type": "u16" if width == 2 else "u8"}
            if width == 2:
                order = byte_order_of(kind, at)
                candidate = Candidate(at, width, order)
                if order != self.order:
                    field["byte_order"] = order
            values = [candidate.value(p) for p in kind.distinct]
            field["documented"] = False
            field["note"] = (
                f"varies: {len(set(values))} values from {min(values)} to {max(values)}; "
                "what it measures is not known yet"
            )
            fields.append(field)
        return {"opcode": HexInt(kind.opcode, width=2), "fields": fields}

    # -- capabilities ----------------------------------------------------------

    def _capabilities(self) -> dict[str, Any]:
        roles = self.roles
        set_kind = roles.set_kind
        assert set_kind is not None
        assert roles.set_field is not None
        assert roles.status is not None
        values = sorted({roles.set_field.value(p) for p in set_kind.distinct} - {0}) or [1]
        out: dict[str, Any] = {}
        if roles.level:
            out["levels_ppm"] = [1000 + 200 * n for n in range(max(values))]
            roles.out.warnings.append(
                "levels_ppm are placeholders (1000 ppm and up in steps of 200): measure each level"
            )
        else:
            out["speed"] = {
                "min_ppm": values[0],
                "max_ppm": values[-1],
                "firmware_max_ppm": values[-1],
            }
            roles.out.warnings.append(
                f"speed range {values[0]}..{values[-1]} is what the capture asked for, in the "
                "setpoint's raw units: check the unit and the firmware's true limit"
            )
        keepalive = roles.commands.get(CommandKind.KEEPALIVE.value)
        if keepalive is not None:
            period = median_gap([t for t, _ in keepalive.frames]) or 1.0
            out["keepalive"] = {"strategy": "fixed", **_periods(period)}
        elif (repeat := _repeat_period(set_kind)) is not None:
            out["keepalive"] = {"strategy": "repeat_last", **_periods(repeat)}
            roles.out.warnings.append(
                f"the setpoint is repeated every {repeat:.3g} s: keepalive repeat_last, "
                "firmware timeout guessed as three periods"
            )
        else:
            out["keepalive"] = {"strategy": "none"}
        request = roles.commands.get(CommandKind.STATUS_REQUEST.value)
        polled = request if request is not None else roles.status
        period = median_gap([t for t, _ in polled.frames]) or 1.0
        mode = "poll" if request is not None else "stream"
        out["telemetry"] = {"mode": mode, "period_s": round(period, 3)}
        return out

    # -- vectors ---------------------------------------------------------------

    def _vectors(self, doc: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            codec = Codec(DeviceSpec.model_validate(_plain(doc)))
        except ValidationError as exc:
            self.roles.out.warnings.append(f"the draft does not hold together: {exc}")
            return []
        examples: list[tuple[str, bytes]] = []
        for kind in self.roles.commands.values():
            examples += [("host", f) for f in list(kind.examples.values())[:2]]
        assert self.roles.status is not None
        examples += [("device", f) for f in list(self.roles.status.examples.values())[:2]]
        out: list[dict[str, Any]] = []
        for direction, frame in dict.fromkeys(examples):
            try:
                if direction == "host":
                    message: Any = codec.decode_command(frame)
                    again = codec.encode_command(message)
                else:
                    message = codec.decode_report(frame)
                    again = codec.encode_report(message)
            except (DecodeError, EncodeError):
                continue  # another kind sharing the opcode; its own vector covers it
            if again == frame:
                meaning = message.model_dump(mode="json", exclude_none=True)
                out.append(
                    {"direction": direction, "hex": frame.hex(" ").upper(), "message": meaning}
                )
        return out


def _periods(period: float) -> dict[str, float]:
    period = round(period, 3)
    return {"period_s": period, "timeout_s": round(period * 3, 3)}


def _repeat_period(kind: Kind) -> float | None:
    """The interval at which the same setpoint frame is sent again, if it is."""
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(kind.frames) if a[1] == b[1]]
    return statistics.median(gaps) if len(gaps) >= _REPEATS else None


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, HexInt):
        return int(value)
    return value


def render(draft: Draft) -> str:
    """The drafted spec as YAML, headed by what was found and what was guessed."""
    assert draft.spec is not None
    lines = ["# Drafted by `gunctl specs draft`. Check every guess before trusting it.", "#"]
    lines += [f"# found: {f}" for f in draft.findings]
    lines += [f"# note: {w}" for w in draft.warnings]
    buffer = io.StringIO()
    yaml = YAML()
    yaml.width = 100
    yaml.dump(draft.spec, buffer)
    return "\n".join(lines) + "\n" + buffer.getvalue()
