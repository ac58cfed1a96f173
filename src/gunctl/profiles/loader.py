"""Reading the muscle catalogue and the protocols, and checking one against the other.

The shipped ``profiles`` folder is read first, then a user folder with the same
layout (an optional ``muscles.yaml`` and ``protocols/*.yaml``). A user muscle
replaces the shipped muscle with the same id; a user protocol replaces the
shipped protocol with the same name (a protocol's name is its file stem).

Every problem in every file is collected and raised together as one
:class:`~gunctl.datafile.InvalidFileError`. A value outside a muscle's envelope
makes the file invalid: nothing is clamped here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from gunctl.datafile import Document, InvalidFileError, Problem, Stamp, plain, stamp, suggest
from gunctl.errors import GunctlError, UnknownNameError
from gunctl.heads import Head
from gunctl.profiles.models import MAX_SESSION_S, Muscle, MuscleCatalogue, Protocol, Step
from gunctl.resources import shipped
from gunctl.units import duration

ENV_VAR = "GUNCTL_PROFILES"
MUSCLES_FILE = "muscles.yaml"
PROTOCOLS_DIR = "protocols"


@dataclass
class Catalogue:
    """The effective muscles and protocols, shipped and user files merged."""

    muscles: dict[str, Muscle] = field(default_factory=dict)
    protocols: dict[str, Protocol] = field(default_factory=dict)
    muscle_sources: dict[str, Path] = field(default_factory=dict)
    protocol_sources: dict[str, Path] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)  # left out, with partial=True

    def source_of(self, name: str) -> Path:
        """The file a protocol (or, failing that, a muscle) called ``name`` came from.

        A few names are both a protocol and a muscle (``piriformis``); the
        protocol wins, as it does for ``gunctl profiles show``.
        """
        if name in self.protocol_sources:
            return self.protocol_sources[name]
        if name in self.muscle_sources:
            return self.muscle_sources[name]
        raise UnknownNameError(f"no protocol or muscle named {name!r}")


def user_profiles_dir(user_dir: Path | None = None) -> Path | None:
    """``user_dir``, or the folder named by ``GUNCTL_PROFILES``, or None."""
    if user_dir is not None:
        return user_dir
    env = os.environ.get(ENV_VAR)
    return Path(env) if env else None


_loaded: dict[Path | None, tuple[Stamp, Catalogue, list[Problem]]] = {}


def load_catalogue(user_dir: Path | None = None, *, partial: bool = False) -> Catalogue:
    """Load shipped then user profiles; raise one InvalidFileError listing every problem.

    With ``partial``, a broken file does not stop the rest: whatever it would
    have defined is left out (a shipped protocol it overrides included, so a
    person never gets the shipped one by mistake), and its problems are in
    ``catalogue.problems`` to report. A user folder that does not exist is
    still an error.

    Each folder's result is kept until one of its files changes, so asking
    again costs a few ``stat`` calls, not a parse.
    """
    folder = user_profiles_dir(user_dir)
    if folder is not None and not folder.is_dir():
        raise GunctlError(
            f"the profiles folder {folder} does not exist",
            f"point --profiles or {ENV_VAR} at a folder holding muscles.yaml and protocols/, "
            f"or unset {ENV_VAR}",
        )
    key = stamp(_files(_folders(folder)))
    cached = _loaded.get(folder)
    if cached is None or cached[0] != key:
        cached = (key, *_load(folder))
        _loaded[folder] = cached
    _, catalogue, problems = cached
    if problems and not partial:
        raise InvalidFileError(problems)
    return Catalogue(
        dict(catalogue.muscles),
        dict(catalogue.protocols),
        dict(catalogue.muscle_sources),
        dict(catalogue.protocol_sources),
        list(problems),
    )


def _files(folders: list[Path]) -> list[Path]:
    """Every file a catalogue is read from, present or not, in reading order."""
    out = [*folders, *(folder / MUSCLES_FILE for folder in folders)]
    for folder in folders:
        out.append(folder / PROTOCOLS_DIR)  # a file added or removed changes its mtime
        out.extend(sorted((folder / PROTOCOLS_DIR).glob("*.yaml")))
    return out


def validate_files(paths: Iterable[Path], user_dir: Path | None = None) -> list[Problem]:
    """Every problem in ``paths``, each a muscle catalogue or a protocol.

    A file with a top-level ``muscles:`` key is a catalogue and is checked on its
    own. Any other file is a protocol, checked against the effective catalogue
    (shipped muscles with the user's on top); problems in that catalogue are
    reported too, since the protocol cannot be fully checked without it.
    """
    folders = _folders(user_profiles_dir(user_dir))
    muscles: _Muscles | None = None
    problems: list[Problem] = []
    for path in paths:
        try:
            doc = Document.read(path)
        except InvalidFileError as exc:
            problems.extend(exc.problems)
            continue
        if isinstance(doc.tree, Mapping) and "muscles" in doc.tree:
            problems.extend(_read_muscles(doc).problems)
            continue
        if muscles is None:
            muscles = _effective_muscles(folders)
            problems.extend(muscles.problems)
        problems.extend(_read_protocol(doc, muscles)[1])
    return problems


def cross_check(doc: Document, protocol: Protocol, muscles: Mapping[str, Muscle]) -> list[Problem]:
    """Problems of ``protocol`` (read from ``doc``) against the muscle envelopes."""
    return _cross_check(doc, protocol, _Muscles(dict(muscles), {}, set(), []))


# --- internals -------------------------------------------------------------------


@dataclass
class _Muscles:
    muscles: dict[str, Muscle]
    sources: dict[str, Path]
    broken: set[str]  # ids present in a file but invalid: steps on them are not cross-checked
    problems: list[Problem]


def _folders(user_dir: Path | None) -> list[Path]:
    folders = [shipped("profiles")]
    if user_dir is not None:
        folders.append(user_dir)
    return folders


def _load(user_dir: Path | None) -> tuple[Catalogue, list[Problem]]:
    folders = _folders(user_dir)
    problems: list[Problem] = []
    muscles = _effective_muscles(folders)
    problems.extend(muscles.problems)
    catalogue = Catalogue(muscles=muscles.muscles, muscle_sources=muscles.sources)

    # A later folder's file replaces an earlier one with the same stem (= name).
    files: dict[str, Path] = {}
    for folder in folders:
        for path in sorted((folder / PROTOCOLS_DIR).glob("*.yaml")):
            files[path.stem] = path
    for stem in sorted(files):
        try:
            doc = Document.read(files[stem])
        except InvalidFileError as exc:
            problems.extend(exc.problems)
            continue
        protocol, found = _read_protocol(doc, muscles)
        problems.extend(found)
        if protocol is not None and not found:
            catalogue.protocols[protocol.name] = protocol
            catalogue.protocol_sources[protocol.name] = files[stem]
    return catalogue, problems


def _effective_muscles(folders: list[Path]) -> _Muscles:
    out = _Muscles({}, {}, set(), [])
    for folder in folders:
        path = folder / MUSCLES_FILE
        if not path.exists():
            continue
        try:
            doc = Document.read(path)
        except InvalidFileError as exc:
            out.problems.extend(exc.problems)
            continue
        found = _read_muscles(doc)
        for name, muscle in found.muscles.items():
            out.muscles[name] = muscle
            out.sources[name] = path
            out.broken.discard(name)
        for name in found.broken:
            out.muscles.pop(name, None)
            out.sources.pop(name, None)
            out.broken.add(name)
        out.problems.extend(found.problems)
    return out


def _read_muscles(doc: Document) -> _Muscles:
    """The valid muscles of one catalogue file, the ids of invalid ones, and all problems."""
    try:
        catalogue = doc.validate(MuscleCatalogue)
    except InvalidFileError as exc:
        good: dict[str, Muscle] = {}
        broken: set[str] = set()
        raw = doc.tree.get("muscles") if isinstance(doc.tree, Mapping) else None
        if isinstance(raw, Mapping):
            for name, node in raw.items():
                try:
                    good[str(name)] = Muscle.model_validate(plain(node))
                except ValidationError:
                    broken.add(str(name))
        return _Muscles(good, dict.fromkeys(good, doc.path), broken, exc.problems)
    return _Muscles(dict(catalogue.muscles), dict.fromkeys(catalogue.muscles, doc.path), set(), [])


def _read_protocol(doc: Document, muscles: _Muscles) -> tuple[Protocol | None, list[Problem]]:
    try:
        protocol = doc.validate(Protocol)
    except InvalidFileError as exc:
        # Still check every step that is well formed on its own, so that one
        # typo does not hide the other problems in the file.
        found = exc.problems + _salvage_steps(doc, muscles)
        return None, sorted(found, key=lambda p: p.line or 0)
    return protocol, _cross_check(doc, protocol, muscles)


def _salvage_steps(doc: Document, muscles: _Muscles) -> list[Problem]:
    problems: list[Problem] = []
    tree = doc.tree if isinstance(doc.tree, Mapping) else {}
    name = tree.get("name")
    if isinstance(name, str):
        problems.extend(_check_name(doc, name))
    steps = tree.get("steps")
    if not isinstance(steps, list):
        return problems
    for i, node in enumerate(steps):
        try:
            step = Step.model_validate(plain(node))
        except ValidationError:
            continue
        problems.extend(_check_step(doc, i, step, muscles))
    return problems


def _check_name(doc: Document, name: str) -> list[Problem]:
    stem = doc.path.stem
    if name == stem:
        return []
    message = f"name {name!r} differs from the file name {stem!r}; they must match"
    return [doc.problem(("name",), message)]


def _check_step(doc: Document, i: int, step: Step, muscles: _Muscles) -> list[Problem]:
    at = ("steps", i)
    if step.muscle in muscles.broken:
        return []  # its own file already has a problem to fix first
    muscle = muscles.muscles.get(step.muscle)
    if muscle is None:
        hint = suggest(step.muscle, muscles.muscles) or " (see `gunctl profiles list`)"
        return [doc.problem((*at, "muscle"), f"unknown muscle {step.muscle!r}{hint}")]
    if not muscle.reachable:
        message = f"{step.muscle} cannot be reached with a massage gun; no step may target it"
        return [doc.problem((*at, "muscle"), message)]
    problems = _check_head(doc, at, step.head, step.muscle, muscle)
    if step.intensity > muscle.intensity_cap:
        problems.append(
            doc.problem(
                (*at, "intensity"),
                f"{step.intensity:g} is above the {step.muscle} cap of {muscle.intensity_cap:g}",
            )
        )
    hold = muscle.hold_s
    if hold is not None and not hold.min <= step.hold_s <= hold.max:
        problems.append(
            doc.problem(
                (*at, "hold_s"),
                f"{step.hold_s:g} s is outside the {step.muscle} hold range of "
                f"{hold.min:g} to {hold.max:g} s",
            )
        )
    if step.pulsing and not muscle.pulsing_allowed:
        problems.append(doc.problem((*at, "pulsing"), f"pulsing is not allowed on {step.muscle}"))
    return problems


def _cross_check(doc: Document, protocol: Protocol, muscles: _Muscles) -> list[Problem]:
    problems = _check_name(doc, protocol.name)
    for i, step in enumerate(protocol.steps):
        problems.extend(_check_step(doc, i, step, muscles))

    # Running time per muscle and side, against the muscle's per-session limit.
    spent: dict[tuple[str, str], float] = {}
    reported: set[tuple[str, str]] = set()
    for held in protocol.expanded():
        key = (held.muscle, held.side)
        muscle = muscles.muscles.get(held.muscle)
        if muscle is None or not muscle.reachable:
            continue
        spent[key] = spent.get(key, 0.0) + held.contact_s
        if spent[key] > muscle.session_s_max and key not in reported:
            reported.add(key)
            problems.append(
                doc.problem(
                    ("steps", held.index, "hold_s"),
                    f"{held.muscle} ({held.side}) gets {duration(spent[key])} of ramps and holds "
                    f"by this step, above its session limit of {duration(muscle.session_s_max)}",
                )
            )

    total = protocol.total_s()
    if total > MAX_SESSION_S:
        problems.append(
            doc.problem(
                ("steps",),
                f"the whole protocol takes {duration(total)}, above the session limit of "
                f"{duration(MAX_SESSION_S)}",
            )
        )
    return problems


def _check_head(
    doc: Document, at: tuple[str, int], head: Head, name: str, muscle: Muscle
) -> list[Problem]:
    if head in muscle.heads.forbidden:
        return [doc.problem((*at, "head"), f"the {head} head is forbidden on {name}")]
    if head not in muscle.heads.allowed:
        allowed = ", ".join(h.value for h in muscle.heads.allowed)
        return [
            doc.problem((*at, "head"), f"the {head} head is not allowed on {name} (use {allowed})")
        ]
    return []
