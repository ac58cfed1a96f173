"""Shared test set-up: quiet, machine-readable logs unless a test asks for more."""

from __future__ import annotations

from gunctl.logs import configure

configure(json=True, level="error")
