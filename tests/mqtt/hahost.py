"""Home Assistant for the tests: skipped only where it cannot be installed at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.homeassistant import NotInstalled, find_python


def venv_python() -> Path:
    """Home Assistant's interpreter; a failure where it could be installed but is not."""
    try:
        found = find_python()
    except NotInstalled as exc:
        pytest.fail(str(exc))
    if found is None:
        pytest.skip("no Python 3.13 on this machine, which Home Assistant 2025.4 needs")
    return found
