"""The front ends stay simple: each view of a gun is a reading of GunState.

``device_state`` (the MQTT state document) and ``View.render`` (the live
display) once read the Supervisor three or four levels deep, at a cyclomatic
complexity of 27 and 22. Reading GunState, each is at most 10 (radon's
measure), and so is every function of the facade and of GunState.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from radon.complexity import cc_visit
from radon.visitors import Function

import gunctl

SRC = Path(gunctl.__file__).parent
LIMIT = 10


def complexities(module: str) -> dict[str, int]:
    """Each function's and method's cyclomatic complexity, by its qualified name."""
    found: dict[str, int] = {}
    for block in cc_visit((SRC / module).read_text(encoding="utf-8")):
        if isinstance(block, Function):
            found[block.fullname] = block.complexity
        for method in getattr(block, "methods", []):
            found[method.fullname] = method.complexity
    return found


@pytest.mark.parametrize(
    ("module", "function"),
    [("mqtt/payloads.py", "device_state"), ("cli/live.py", "View.render")],
)
def test_a_view_of_the_gun_is_simple(module: str, function: str) -> None:
    assert complexities(module)[function] <= LIMIT


@pytest.mark.parametrize("module", ["gun.py", "state.py", "mqtt/payloads.py", "cli/live.py"])
def test_every_function_of_the_facade_and_the_views_is_simple(module: str) -> None:
    over = {name: cc for name, cc in complexities(module).items() if cc > LIMIT}
    assert over == {}
