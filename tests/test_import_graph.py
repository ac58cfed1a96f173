"""Which gunctl modules may import which: the layering, checked on the source.

The graph is read from every ``import`` in ``src/gunctl`` (at module level,
inside functions and under ``TYPE_CHECKING`` alike), so a lazy import cannot
hide a dependency. The daemon serves any front end and knows nothing of MQTT;
nothing below the command line imports it.
"""

from __future__ import annotations

import ast
from functools import cache
from pathlib import Path

import gunctl

SRC = Path(gunctl.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@cache
def graph() -> dict[str, set[str]]:
    """Each gunctl module and the gunctl modules it imports directly."""
    modules = {_module(path): path for path in SRC.rglob("*.py")}
    edges: dict[str, set[str]] = {}
    for name, path in modules.items():
        found: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
        # importing gunctl.a.b runs gunctl/a/__init__.py too
        loaded = {p for m in found for p in _with_packages(m)}
        edges[name] = {m for m in loaded if m in modules and m != name}
    return edges


def _with_packages(module: str) -> list[str]:
    """``module`` and every package above it: ``gunctl.a.b`` -> gunctl, gunctl.a, gunctl.a.b."""
    parts = module.split(".")
    return [".".join(parts[:n]) for n in range(1, len(parts) + 1)]


def reachable(start: str) -> set[str]:
    """Every gunctl module importing ``start`` loads, directly or not."""
    seen, todo = set(), [start]
    while todo:
        for dep in graph()[todo.pop()] - seen:
            seen.add(dep)
            todo.append(dep)
    return seen


def test_the_graph_sees_lazy_imports() -> None:
    # gunctl.daemon imports the proxies only when configured, inside a method
    assert "gunctl.links.proxy" in graph()["gunctl.daemon"]


def test_the_daemon_does_not_import_mqtt() -> None:
    mqtt = sorted(m for m in reachable("gunctl.daemon") if m.startswith("gunctl.mqtt"))
    assert mqtt == []


def test_nothing_imports_the_command_line() -> None:
    importers = sorted(
        name
        for name, deps in graph().items()
        if not name.startswith("gunctl.cli") and any(d.startswith("gunctl.cli") for d in deps)
    )
    assert importers == []


FRONT_ENDS = ("gunctl.cli", "gunctl.mqtt")
CONTROL_INTERNALS = (
    "gunctl.control.supervisor",
    "gunctl.control.session",
    "gunctl.control.driver",
    "gunctl.control.rules",
)


def test_front_ends_read_the_public_state_not_the_control_loop() -> None:
    # the command line and MQTT read GunState and the events; they hand requests
    # from gunctl.requests; the Supervisor's own modules are not theirs to import
    reaching_in = sorted(
        f"{name} -> {dep}"
        for name, deps in graph().items()
        if name.startswith(FRONT_ENDS)
        for dep in deps
        if dep.startswith(CONTROL_INTERNALS)
    )
    assert reaching_in == []
