"""A rule set carries each rule's settings into every session, with its state reset.

The Supervisor takes ``rules.fresh()`` at each start; a rule built with
arguments must keep them there, or a tighter limit someone chose silently
returns to its default when the session begins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import ClassVar

import pytest

from gunctl.control.rules import Action, RuleSet, Tick, Verdict

from rig import Rig, plan_for

pytestmark = pytest.mark.looptime(noop_cycles=1)


@dataclass
class SpeedCeiling:
    """Stops the motor above ``limit_ppm``; the default is a ceiling nothing reaches."""

    limit_ppm: float = 1e9
    name: str = "speed_ceiling"
    on_frame: ClassVar[bool] = True
    seen: int = field(default=0, init=False)  # frames checked: state that fresh() resets

    def check(self, tick: Tick) -> Verdict | None:
        self.seen += 1
        speed = tick.telemetry.get("speed_ppm")
        if speed is None or speed <= self.limit_ppm:
            return None
        return Verdict(self.name, Action.STOP, f"{speed:.0f} ppm", {"speed_ppm": speed})


def test_fresh_keeps_arguments_and_resets_state() -> None:
    used = SpeedCeiling(limit_ppm=600)
    used.seen = 7
    fresh = RuleSet([used]).fresh()
    (rule,) = fresh.rules
    assert isinstance(rule, SpeedCeiling)
    assert (rule.limit_ppm, rule.seen) == (600, 0)
    assert rule is not used


async def test_a_rule_built_with_arguments_keeps_them_when_a_session_starts(
    rig_factory: Callable[..., Awaitable[Rig]],
) -> None:
    rules = RuleSet([*RuleSet().rules, SpeedCeiling(limit_ppm=600)])
    rig = await rig_factory("gunctl-open", rules=rules)
    await rig.start(plan_for("glute", "gunctl-open"))
    stop = await rig.until("safety_stop", timeout=120)
    assert stop.rule == "speed_ceiling"
