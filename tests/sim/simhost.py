"""Helpers for simulator tests: every spec as a parameter, and the bare host."""

from __future__ import annotations

from typing import Any

import pytest

from gunctl.specs.loader import load_specs
from gunsim.host import Host

SPECS = load_specs()

__all__ = ["SPECS", "Host", "spec_params"]


def spec_params() -> list[Any]:
    return [pytest.param(spec, id=name) for name, spec in SPECS.items()]
