"""The rig fixture: Supervisors on simulated guns, closed at the end of each test."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from rig import Rig, open_rig


@pytest.fixture
async def rig_factory() -> AsyncIterator[Callable[..., Any]]:
    async with contextlib.AsyncExitStack() as stack:

        async def make(spec: str, **kwargs: Any) -> Rig:
            return await stack.enter_async_context(open_rig(spec, **kwargs))

        yield make
