"""Callbacks that do not keep their object alive.

A part that calls back into the object that owns it (a session publishing
through its Supervisor, simulated firmware notifying through its device) makes
a reference cycle when it holds a bound method. A closed gun is then freed not
by reference counting but by Python's cyclic garbage collector, and a full
collection over what many closed guns left held every control loop of the
process at once: 27 to 30 ms of CPU while 15 simulated guns came and went
beside a running one (BENCHMARKS.md, "Hot-plug beside a running session").
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import ParamSpec

P = ParamSpec("P")


def weak_method(method: Callable[P, None]) -> Callable[P, None]:
    """The bound ``method``, called through a weak reference: nothing once its object is gone."""
    ref = weakref.WeakMethod(method)

    def call(*args: P.args, **kwargs: P.kwargs) -> None:
        bound = ref()
        if bound is not None:
            bound(*args, **kwargs)

    return call
