"""Replaying a capture through a spec's codec: does the spec explain every frame?

Each write to the spec's command characteristic is decoded as a command and
each notification on its telemetry characteristic as a report; whatever
decodes is encoded again and must give the same bytes. A frame counts as
*claimed* by the spec when it carries the spec's header and an opcode the
spec knows: a claimed frame that does not decode, or does not come back the
same, means the spec is wrong about it. Frames with an opcode the spec does
not know are kinds the spec has not described yet; frames without the header
are not the spec's at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from gunctl.capture.att import AttOp, AttRecord
from gunctl.specs.codec import Codec, DecodeError, DecodeFailure, EncodeError
from gunctl.specs.models import DeviceSpec, Direction, hex_to_bytes

MAX_EXAMPLES = 5  # refused frames shown per reason
MAX_REMEMBERED = 65_536  # verdicts kept per replay: repeated frames are judged once


class Outcome(StrEnum):
    DECODED = "decoded"  # decoded, and encodes back to the same bytes
    REFUSED = "refused"  # the spec claims it but cannot decode it
    CHANGED = "changed"  # decoded, but encoding the message gives other bytes
    UNKNOWN = "unknown"  # the spec's header with an opcode it does not know
    FOREIGN = "foreign"  # not a frame of this spec (another header)


@dataclass
class Coverage:
    """What a replay found, counted by outcome, kind and reason."""

    spec: str
    outcomes: Counter[tuple[Direction, Outcome]] = field(default_factory=Counter)
    kinds: Counter[tuple[Direction, str]] = field(default_factory=Counter)
    reasons: Counter[tuple[Direction, str]] = field(default_factory=Counter)
    unknown: Counter[tuple[Direction, int]] = field(default_factory=Counter)
    examples: list[tuple[float, Direction, str, str]] = field(default_factory=list)
    spec_kinds: list[tuple[Direction, str]] = field(default_factory=list)

    @property
    def failed(self) -> int:
        return sum(n for (_, outcome), n in self.outcomes.items() if outcome in _FAILURES)

    @property
    def ok(self) -> bool:
        """Every claimed frame decoded, and at least one frame was the spec's."""
        return self.failed == 0 and self.decoded > 0

    @property
    def decoded(self) -> int:
        return sum(n for (_, outcome), n in self.outcomes.items() if outcome is Outcome.DECODED)

    @property
    def unseen(self) -> list[tuple[Direction, str]]:
        return [k for k in self.spec_kinds if k not in self.kinds]

    def as_json(self) -> dict[str, object]:
        unknown = {(d, f"0x{op:02x}"): n for (d, op), n in self.unknown.items()}
        return {
            "spec": self.spec,
            "ok": self.ok,
            "outcomes": _by_direction(self.outcomes),
            "kinds": _by_direction(self.kinds),
            "refused": _by_direction(self.reasons),
            "unknown_opcodes": _by_direction(unknown),
            "unseen_kinds": [f"{d.value} {k}" for d, k in self.unseen],
            "examples": [
                {"t": round(t, 6), "direction": d.value, "reason": why, "value": value}
                for t, d, why, value in self.examples
            ],
        }


_FAILURES = {Outcome.REFUSED, Outcome.CHANGED}


def _by_direction(counts: Mapping[tuple[Direction, Any], int]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for (direction, key), n in sorted(counts.items(), key=str):
        out.setdefault(direction.value, {})[str(key)] = n
    return out


def replay(spec: DeviceSpec, records: Iterable[AttRecord]) -> Coverage:
    codec = Codec(spec)
    headers = {
        Direction.HOST: hex_to_bytes(spec.frame.host_header),
        Direction.DEVICE: hex_to_bytes(spec.frame.device_header),
    }
    coverage = Coverage(spec.name)
    coverage.spec_kinds = [(Direction.HOST, k.value) for k in spec.commands] + [
        (Direction.DEVICE, k.value) for k in spec.reports
    ]
    wanted = {
        Direction.HOST: (spec.gatt.command, {AttOp.WRITE, AttOp.WRITE_CMD}),
        Direction.DEVICE: (spec.gatt.telemetry, {AttOp.NOTIFY, AttOp.INDICATE}),
    }
    verdicts: dict[tuple[Direction, bytes], tuple[Outcome, str | int]] = {}
    for record in records:
        uuid, ops = wanted[record.direction]
        if record.op not in ops or record.uuid not in (uuid, None):
            continue
        key = (record.direction, record.value)
        verdict = verdicts.get(key)
        if verdict is None:
            if len(verdicts) >= MAX_REMEMBERED:
                verdicts.clear()
            verdict = verdicts[key] = _verdict(codec, headers[record.direction], *key)
        _tally(coverage, record, *verdict)
    return coverage


def _verdict(
    codec: Codec, header: bytes, direction: Direction, data: bytes
) -> tuple[Outcome, str | int]:
    """What the spec makes of one frame: the kind it decodes as, or why not."""
    kind: str
    try:
        if direction is Direction.HOST:
            command = codec.decode_command(data)
            kind, again = command.kind, codec.encode_command(command)
        else:
            report = codec.decode_report(data)
            kind, again = report.kind, codec.encode_report(report)
    except DecodeError as exc:
        if exc.reason is DecodeFailure.BAD_HEADER or not data.startswith(header):
            return Outcome.FOREIGN, ""
        if exc.reason is DecodeFailure.UNKNOWN_OPCODE:
            return Outcome.UNKNOWN, exc.opcode or 0
        return Outcome.REFUSED, str(exc)
    except EncodeError as exc:
        return Outcome.CHANGED, f"does not encode again: {exc}"
    if again != data:
        return Outcome.CHANGED, f"encodes back as {again.hex()}"
    return Outcome.DECODED, kind


def _tally(coverage: Coverage, record: AttRecord, outcome: Outcome, detail: str | int) -> None:
    direction = record.direction
    coverage.outcomes[(direction, outcome)] += 1
    if outcome is Outcome.DECODED:
        coverage.kinds[(direction, str(detail))] += 1
    elif outcome is Outcome.UNKNOWN:
        coverage.unknown[(direction, int(detail))] += 1
    elif outcome in _FAILURES:
        why = str(detail)
        reason = why.split(":", 1)[0]
        coverage.reasons[(direction, reason)] += 1
        if coverage.reasons[(direction, reason)] <= MAX_EXAMPLES:
            coverage.examples.append((record.t, direction, why, record.value.hex(" ")))
