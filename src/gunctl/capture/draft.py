"""A firmware spec skeleton drafted from a capture, with an honest account of how.

The layout comes from ``infer`` (checksum, header, length byte, frame kinds).
What each kind means is a guess, and the draft says which guesses it made:
the host kind whose payload varies is the setpoint (a speed, or a level when
its values are small), the same kind with a zero value or a rare kind after
the last setpoint is stop, a regular kind is a keepalive or, when the device
answers each one, a status request, a kind sent once before any setpoint is a
version request; the busiest device kind is the status report. Marks
(``--mark 12.5=speed:2400``: what the user did, and when) override these
guesses and rank the candidate fields that changed at that moment.

Every report field is ``documented: false``, so nothing drafted here ever
reaches a safety rule until a person has checked it and says so in the file.
"""

from __future__ import annotations

import bisect
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gunctl.capture.frames import CaptureFrames
from gunctl.capture.infer import (
    MIN_FRAMES,
    Candidate,
    ChecksumFit,
    Kind,
    Layout,
    byte_order_of,
    candidates,
    constant_prefix,
    find_checksums,
    find_layout,
    group_kinds,
    split_fields,
)
from gunctl.capture.specfile import SpecWriter
from gunctl.specs.models import CommandKind

MARK_WINDOW_S = 3.0  # a mark explains frames up to this long after it
_ONE_SHOT = {CommandKind.STOP.value, CommandKind.VERSION_REQUEST.value}
_ACTIONS = {k.value for k in CommandKind} | {"speed", "level"}


@dataclass(frozen=True)
class Mark:
    """What the user did at a moment of the capture: ``12.5=speed:2400``, ``30=stop``."""

    t: float
    action: str
    value: int | None = None

    @classmethod
    def parse(cls, text: str) -> Mark:
        when, sep, what = text.partition("=")
        action, _, value = what.partition(":")
        try:
            t = float(when)
            number = int(value) if value else None
        except ValueError:
            raise ValueError(f"{text!r}: expected T=WHAT, e.g. 12.5=speed:2400") from None
        if not sep or action not in _ACTIONS:
            raise ValueError(f"{text!r}: WHAT is one of {', '.join(sorted(_ACTIONS))}")
        return cls(t, action, number)

    def __str__(self) -> str:
        return f"{self.t:g}={self.action}" + ("" if self.value is None else f":{self.value}")


@dataclass
class Ranked:
    """Candidate fields of one kind, ranked by how well they explain one mark."""

    mark: Mark
    kind: str
    fields: list[tuple[Candidate, int, int | None, int | None]]  # field, score, before, after

    def as_json(self) -> dict[str, Any]:
        return {
            "mark": str(self.mark),
            "kind": self.kind,
            "candidates": [
                {"field": c.describe(), "score": score, "before": before, "after": after}
                for c, score, before, after in self.fields
            ],
        }


@dataclass
class Draft:
    """The drafted spec (None when no layout could be found) and what was learnt."""

    name: str
    spec: dict[str, Any] | None = None
    checksum: ChecksumFit | None = None
    also_fits: list[ChecksumFit] = field(default_factory=list)
    layout: Layout | None = None
    kinds: list[tuple[Kind, str | None]] = field(default_factory=list)  # kind, role
    rankings: list[Ranked] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        layout = self.layout
        return {
            "name": self.name,
            "ok": self.spec is not None,
            "checksum": None
            if self.checksum is None
            else {
                "kind": self.checksum.kind.value,
                "start": self.checksum.start,
                "at": "end" if self.checksum.at is None else self.checksum.at,
                "byte_order": self.checksum.byte_order,
            },
            "also_fits": [f.describe() for f in self.also_fits],
            "parts": None if layout is None else [p.value for p in layout.parts],
            "kinds": [
                {
                    "direction": k.direction,
                    "opcode": k.opcode,
                    "payload_size": k.size,
                    "count": len(k.frames),
                    "distinct": len(k.examples),
                    "role": role,
                    "varying": [i for i, same in enumerate(k.constant()) if not same],
                    "candidates": [c.describe() for c in candidates(k)],
                }
                for k, role in self.kinds
            ],
            "marks": [r.as_json() for r in self.rankings],
            "findings": self.findings,
            "warnings": self.warnings,
        }


def draft_spec(frames: CaptureFrames, name: str, source: str, marks: list[Mark]) -> Draft:
    out = Draft(name)
    if frames.command is None or frames.telemetry is None:
        missing = "writes" if frames.command is None else "notifications"
        out.warnings.append(f"the capture has no {missing}: a spec needs both directions")
        return out
    host = [f for _, f in frames.command.frames]
    device = [f for _, f in frames.telemetry.frames]
    command, telemetry = frames.command, frames.telemetry
    out.findings.append(
        f"command characteristic {command.uuid or hex(command.handle)}: {command.total} writes; "
        f"telemetry {telemetry.uuid or hex(telemetry.handle)}: {telemetry.total} notifications"
    )
    _find_checksum(out, host, device)
    layout = find_layout(host, device, out.checksum)
    if layout is None:
        out.warnings.append(
            "no byte is constant at the start of every frame: no header, so no layout. "
            + (
                "With no checksum either, these frames look encrypted or rolling-coded; "
                "gunctl cannot draft a spec for them from a capture."
                if out.checksum is None
                else ""
            )
        )
        return out
    out.layout = layout
    out.findings.append(
        f"parts: {', '.join(p.value for p in layout.parts)}; header "
        f"{constant_prefix(host)[: layout.header_size].hex(' ')} (host) / "
        f"{constant_prefix(device)[: layout.header_size].hex(' ')} (device)"
        + (f"; length byte at {layout.length_at}" if layout.length_at is not None else "")
    )
    host_kinds = group_kinds(layout, "host", frames.command.frames)
    device_kinds = group_kinds(layout, "device", frames.telemetry.frames)
    roles = Roles(out, host_kinds, device_kinds, marks)
    out.kinds = [(k, roles.role_of(k)) for k in [*host_kinds, *device_kinds]]
    out.spec = roles.spec(frames, layout, source)
    return out


def _find_checksum(out: Draft, host: list[bytes], device: list[bytes]) -> None:
    fits = find_checksums([*host, *device])
    distinct = len(set(host) | set(device))
    if fits:
        out.checksum, out.also_fits = fits[0], fits[1:]
        out.findings.append(f"checksum: {fits[0].describe()}, matching all {distinct} frames")
        return
    if distinct < MIN_FRAMES:
        out.warnings.append(
            f"only {distinct} distinct frames: too few to claim a checksum; capture more"
        )
        return
    each = {"host": find_checksums(host), "device": find_checksums(device)}
    if each["host"] and each["device"]:
        out.warnings.append(
            f"host frames fit {each['host'][0].describe()}, device frames "
            f"{each['device'][0].describe()}: the spec format has one checksum for both, "
            "so none is claimed"
        )
    else:
        out.warnings.append(
            f"no checksum of the catalogue matches every one of the {distinct} distinct frames "
            "(sums, xor, the CRC-8 and CRC-16 presets, CRC-32; both byte orders; coverage from "
            "byte 0 to 4). The frames may carry no checksum, an unusual one, or be encrypted: "
            "none is claimed"
        )


class Roles:
    """Which command or report each kind of frame is, decided once, then written out."""

    def __init__(
        self,
        out: Draft,
        host: list[Kind],
        device: list[Kind],
        marks: list[Mark],
    ) -> None:
        self.out = out
        self.host = host
        self.device = device
        self.marks = marks
        self.commands: dict[str, Kind] = {}
        self.set_field: Candidate | None = None
        self.level = False
        self.stop_shares_set = False
        self.status = device[0] if device else None
        self.device_times = sorted(t for k in device for t, _ in k.frames)
        self._assign()

    def role_of(self, kind: Kind) -> str | None:
        if kind is self.status:
            return "status"
        roles = [name for name, k in self.commands.items() if k is kind]
        return ", ".join(roles) or None

    # -- deciding ------------------------------------------------------------

    def _marked(self, t: float) -> Kind | None:
        """The kind a mark at ``t`` names: the rarest kind sent in the window after it.

        Periodic frames (keepalives, polls) are always near a mark; the frame the
        user's action caused is the unusual one.
        """
        near = [k for k in self.host if any(t <= ft <= t + MARK_WINDOW_S for ft, _ in k.frames)]
        return min(near, key=lambda k: len(k.frames), default=None)

    def _assign(self) -> None:
        for mark in self.marks:
            kind = self._marked(mark.t)
            if mark.action in ("speed", "level"):
                if self.set_kind is not None and self.level != (mark.action == "level"):
                    self.out.warnings.append(f"mark {mark}: the setpoint is already a {self._unit}")
                    continue
                varying = self._varying_after(mark.t)
                if varying is not None:
                    self.level = mark.action == "level"
                    self.commands[self._unit] = varying
            elif kind is not None:
                self.commands.setdefault(mark.action, kind)
        self._assign_setpoint()
        self._rank_marks()
        self._assign_stop()
        self._assign_constant_kinds()

    def _varying_after(self, t: float) -> Kind | None:
        for kind in self.host:
            if not all(kind.constant()) and any(
                t <= ft <= t + MARK_WINDOW_S for ft, _ in kind.frames
            ):
                return kind
        return None

    @property
    def _unit(self) -> str:
        return (CommandKind.SET_LEVEL if self.level else CommandKind.SET_SPEED).value

    @property
    def set_kind(self) -> Kind | None:
        """The setpoint command's kind (set_speed or set_level), once decided."""
        for name in (CommandKind.SET_SPEED.value, CommandKind.SET_LEVEL.value):
            if name in self.commands:
                return self.commands[name]
        return None

    def _assign_setpoint(self) -> None:
        kind = self.set_kind
        if kind is None:
            varying = [k for k in self.host if not all(k.constant())]
            if not varying:
                self.out.warnings.append("no host frame varies: no setpoint command found")
                return
            kind = max(varying, key=lambda k: len(k.frames))
        runs = [(at, width) for at, width, varies in split_fields(kind) if varies]
        extra = runs[1:]
        at, width = runs[0]
        order = byte_order_of(kind, at) if width == 2 else "big"
        self.set_field = Candidate(at, width, order)
        top = max(self.set_field.value(p) for p in kind.distinct)
        if self.set_kind is None:
            self.level = top <= 20
            role = CommandKind.SET_LEVEL if self.level else CommandKind.SET_SPEED
            self.commands[role.value] = kind
            self.out.warnings.append(
                f"guessed: {kind.label} is {role.value}, its value at {self.set_field.describe()}"
            )
        for at_, width_ in extra:
            self.out.warnings.append(
                f"payload byte {at_} ({width_} bytes) of the setpoint varies too; a command "
                "carries one value, so the draft holds it at its first value: check it"
            )

    def _rank_marks(self) -> None:
        for mark in self.marks:
            if mark.value is None:
                continue
            for kind in [self.set_kind, self.status]:
                if kind is not None:
                    ranked = _rank(kind, mark)
                    if ranked.fields:
                        self.out.rankings.append(ranked)
        best = next((r for r in self.out.rankings if r.kind.startswith("host")), None)
        if best is not None and best.fields[0][1] >= 3:
            self.set_field = best.fields[0][0]

    def _assign_stop(self) -> None:
        name = CommandKind.STOP.value
        set_kind = self.set_kind
        if name in self.commands:
            self.stop_shares_set = self.commands[name] is set_kind
            return
        field = self.set_field
        if set_kind and field and any(field.value(p) == 0 for p in set_kind.distinct):
            self.commands[name] = set_kind
            self.stop_shares_set = True
            self.out.warnings.append(f"guessed: stop is {set_kind.label} with value 0")
            return
        last_set = max((t for t, _ in set_kind.frames), default=0.0) if set_kind else 0.0
        after = [k for k in self._free() if any(t >= last_set for t, _ in k.frames)]
        rare = sorted(after, key=lambda k: len(k.frames))
        if rare:
            self.commands[name] = rare[0]
            self.out.warnings.append(
                f"guessed: stop is {rare[0].label} (sent after the last setpoint)"
            )
        elif set_kind is not None:
            self.commands[name] = set_kind
            self.stop_shares_set = True
            self.out.warnings.append(
                "no stop frame recognised: the draft makes stop the setpoint with value 0. "
                "Record a stop and mark it (--mark T=stop)"
            )

    def _free(self) -> list[Kind]:
        taken = {id(k) for k in self.commands.values()}
        return [k for k in self.host if id(k) not in taken and all(k.constant())]

    def _assign_constant_kinds(self) -> None:
        set_kind = self.set_kind
        first_set = min((t for t, _ in set_kind.frames), default=0.0) if set_kind else 0.0
        for kind in self._free():
            times = [t for t, _ in kind.frames]
            if len(times) >= 5:
                role = CommandKind.STATUS_REQUEST if self._polls(times) else CommandKind.KEEPALIVE
            elif max(times) <= first_set:
                role = CommandKind.VERSION_REQUEST
            else:
                self.out.warnings.append(f"{kind.label}: its meaning is unknown; left out")
                continue
            if role.value in self.commands:
                self.out.warnings.append(
                    f"{kind.label}: looks like a second {role.value}; left out"
                )
                continue
            self.commands[role.value] = kind
            self.out.warnings.append(f"guessed: {kind.label} is {role.value}")
        asked = self.commands.get(CommandKind.VERSION_REQUEST.value)
        for kind in self.device[1:]:
            if asked is not None and _follows(kind, asked):
                self.out.warnings.append(
                    f"{kind.label} answers the version request: left out, because which bytes "
                    "hold the version is not known; add a version report by hand"
                )
            else:
                self.out.warnings.append(f"{kind.label}: a report other than status; left out")

    def _polls(self, times: list[float]) -> bool:
        """A request the device answers: a report follows each, and reports come no oftener."""
        answered = sum(1 for t in times if self._answered(t)) / len(times)
        return answered >= 0.9 and len(self.device_times) <= 1.5 * len(times)

    def _answered(self, t: float) -> bool:
        i = bisect.bisect_left(self.device_times, t)
        return i < len(self.device_times) and self.device_times[i] - t <= 0.05

    # -- writing -------------------------------------------------------------

    def spec(self, frames: CaptureFrames, layout: Layout, source: str) -> dict[str, Any] | None:
        return SpecWriter(self, frames, layout, source).document()


def _follows(reply: Kind, request: Kind, within_s: float = 0.2) -> bool:
    """Whether every frame of ``reply`` came soon after a frame of ``request``."""
    asked = [t for t, _ in request.frames]
    return all(any(0 <= t - a <= within_s for a in asked) for t, _ in reply.frames)


def _rank(kind: Kind, mark: Mark) -> Ranked:
    """Candidate fields of ``kind`` by how they changed at ``mark``: equal to its value first."""
    before = [p for t, p in kind.frames if t < mark.t]
    after = [p for t, p in kind.frames if mark.t <= t <= mark.t + MARK_WINDOW_S]
    scored = []
    for candidate in candidates(kind):
        old = candidate.value(before[-1]) if before else None
        new = [candidate.value(p) for p in after]
        score = 0
        if mark.value is not None and mark.value in new:
            score = 3
        elif new and old is not None and any(v != old for v in new):
            score = 1
        if score:
            shown = mark.value if score == 3 else next(v for v in new if v != old)
            scored.append((candidate, score, old, shown))
    scored.sort(key=lambda item: (-item[1], item[0].width == 1))
    return Ranked(mark, kind.label, scored)


def check_file(name: str, text: str) -> list[str]:
    """Problems ``gunctl specs validate`` would report for the drafted text."""
    from gunctl.datafile import InvalidFileError
    from gunctl.specs.loader import load_spec

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            load_spec(path)
        except InvalidFileError as exc:
            return [f"line {p.line}: {p.field}: {p.message}" for p in exc.problems]
    return []
