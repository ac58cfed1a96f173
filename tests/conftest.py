"""Shared test set-up: quiet, machine-readable logs, and the event-loop watch on every test."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from gunctl.logs import configure

from loopwatch import LIMIT_S, WATCH, install

configure(json=True, level="error")
install()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Iterator[None]:
    WATCH.reset(getattr(item, "originalname", item.name))
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """Fail a test in which a callback held the loop over LIMIT_S after a Supervisor ran."""
    result = yield
    if WATCH.slow:
        listed = "\n  ".join(str(s) for s in WATCH.slow[:10])
        pytest.fail(
            f"{len(WATCH.slow)} callback(s) held the event loop over {LIMIT_S * 1000:g} ms "
            f"while a Supervisor ran:\n  {listed}",
            pytrace=False,
        )
    return result
