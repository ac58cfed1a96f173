"""Captures of simulated sessions, one per family, recorded once per test run."""

from __future__ import annotations

from pathlib import Path

import pytest

from gunctl.specs.loader import load_spec
from gunctl.specs.models import DeviceSpec

from capturehost import FAMILY_FILES, record


@pytest.fixture(scope="session")
def family_specs() -> dict[str, DeviceSpec]:
    return {p.stem: load_spec(p) for p in FAMILY_FILES}


@pytest.fixture(scope="session")
def captures(
    tmp_path_factory: pytest.TempPathFactory, family_specs: dict[str, DeviceSpec]
) -> dict[str, Path]:
    """family name -> a btsnoop capture (Android's HCI H4 datalink) of a simulated session."""
    folder = tmp_path_factory.mktemp("captures")
    return {name: record(spec, folder / f"{name}.log") for name, spec in family_specs.items()}
