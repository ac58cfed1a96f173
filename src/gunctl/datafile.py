"""Loading YAML data files into pydantic models with errors a person can act on.

Firmware specs and profiles are edited by hand, so every problem is reported as
``FILE:LINE: FIELD: message``, and every problem in a file is reported at once
rather than only the first. ruamel.yaml keeps the line of every key and list
item; pydantic's error locations are walked back through that tree to find it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from gunctl.errors import GunctlError

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class DataModel(BaseModel):
    """Base of every file format and message: unknown fields are errors, values immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Problem:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        line = "?" if self.line is None else str(self.line)
        return f"{self.file}:{line}: {self.field}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {"file": self.file, "line": self.line, "field": self.field, "message": self.message}


class InvalidFileError(GunctlError):
    """One or more problems in data files; ``problems`` holds all of them, each FILE:LINE."""

    reason = "invalid_file"

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems), "fix the lines above")


def field_name(loc: Loc) -> str:
    """Render a location as ``steps[2].head`` so it can be found in the file."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "(document)"


Stamp = tuple[tuple[str, int, int], ...]


def stamp(paths: Iterable[Path]) -> Stamp:
    """Each file's path, size and modification time: a change to any file changes it.

    The loaders key their caches on it, so a file is parsed once per change, not
    once per call: parsing every spec takes tens of milliseconds, far too long
    for a control loop that may be asked for a spec while other guns run.
    """
    out = []
    for path in paths:
        try:
            info = path.stat()
        except OSError:
            out.append((str(path), -1, -1))
        else:
            out.append((str(path), info.st_size, info.st_mtime_ns))
    return tuple(out)


def suggest(word: str, known: Iterable[str]) -> str:
    """An error suffix that names the closest known spelling, if any is close."""
    close = difflib.get_close_matches(word, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Document:
    """A parsed YAML file that remembers where each value came from."""

    def __init__(self, path: Path, tree: Any, display: str | None = None) -> None:
        self.path = path
        self.tree = tree
        self.display = display or str(path)

    @classmethod
    def read(cls, path: Path, display: str | None = None) -> Document:
        name = display or str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise InvalidFileError(
                [Problem(name, None, "(file)", exc.strerror or str(exc))]
            ) from exc
        except UnicodeDecodeError as exc:
            message = f"not UTF-8 text ({exc.reason} at byte {exc.start}): is it a YAML file?"
            raise InvalidFileError([Problem(name, None, "(file)", message)]) from exc
        try:
            tree = YAML(typ="rt").load(text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else None
            message = " ".join(filter(None, [exc.context, exc.problem]))
            raise InvalidFileError([Problem(name, line, "(yaml)", message)]) from exc
        return cls(path, tree, name)

    def line(self, loc: Loc) -> int | None:
        """The 1-based line of the deepest part of ``loc`` that exists in the file."""
        node = self.tree
        best = 1 if node is not None else None
        for part in loc:
            if isinstance(node, CommentedMap) and part in node:
                best = node.lc.key(part)[0] + 1
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                best = node.lc.item(part)[0] + 1
            else:
                break
            node = node[part]
        return best

    def problem(self, loc: Loc, message: str) -> Problem:
        return Problem(self.display, self.line(loc), field_name(loc), message)

    def validate(self, model: type[M]) -> M:
        """Build ``model`` from the whole document, reporting every error with its line."""
        try:
            return model.model_validate(plain(self.tree))
        except ValidationError as exc:
            raise InvalidFileError(
                [self.problem(self._file_loc(err["loc"]), err["msg"]) for err in exc.errors()]
            ) from exc

    def _file_loc(self, loc: tuple[int | str, ...]) -> Loc:
        """Drop the parts pydantic adds that are not keys in the file (union tags).

        A last part that is missing from the file is kept: it names a required field.
        """
        node, out = self.tree, []
        for i, part in enumerate(loc):
            if isinstance(node, dict) and part in node:
                node = node[part]
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                node = node[part]
            elif i < len(loc) - 1:
                continue
            out.append(part)
        return tuple(out)


def plain(node: Any) -> Any:
    """The YAML tree as plain dicts and lists, for pydantic."""
    if isinstance(node, dict):
        return {k: plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [plain(v) for v in node]
    return node
