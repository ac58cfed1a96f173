"""The person holding the gun: the force on its head over time.

Both kinds are piecewise constant (a list of segments, each a duration and a
force in newtons), which lets the physics step exactly to each change. Time is
seconds since the device was switched on.

A person who keeps going (``RandomPerson``, a repeating ``ScriptedPerson``)
makes segments as time reaches them and forgets those that time has passed:
the physics only steps forward, so a simulator that runs for days holds one
round of segments, not every one since it was switched on. Asking about a
time already forgotten raises ``ValueError`` rather than answering wrongly.

- ``ScriptedPerson``: the segments you give, then nothing (or again from the
  start with ``repeat=True``);
- ``RandomPerson``: a seeded person who leans in, holds with a little wobble,
  eases off, lifts the gun to move to the next spot, and now and then presses
  far too hard. The same seed gives the same person.
"""

from __future__ import annotations

import bisect
import random
from collections.abc import Iterable


class _Segments:
    """Forces from a list of segments that a subclass may keep extending."""

    def __init__(self) -> None:
        self._starts: list[float] = []
        self._forces: list[float] = []
        self._end = 0.0  # where the known segments end; no force after it

    def _extend(self) -> bool:
        """Add more segments; False if there will never be more."""
        return False

    def _add(self, duration_s: float, force_n: float) -> None:
        if duration_s > 0:
            self._starts.append(self._end)
            self._forces.append(force_n)
            self._end += duration_s

    def _cover(self, t: float) -> None:
        """Make segments up to ``t``; those ending before ``t`` are done with and let go."""
        while t >= self._end:
            passed = len(self._starts)  # every segment so far ends at or before t
            if not self._extend():
                return
            del self._starts[:passed]
            del self._forces[:passed]
        if self._starts and self._starts[0] > 0 and t < self._starts[0]:
            raise ValueError(f"{t:g} s is before {self._starts[0]:g} s, already forgotten")

    def force_at(self, t: float) -> float:
        self._cover(t)
        if t >= self._end or t < 0:
            return 0.0
        return self._forces[bisect.bisect_right(self._starts, t) - 1]

    def next_change(self, t: float) -> float | None:
        self._cover(t)
        if t >= self._end:
            return None
        i = bisect.bisect_right(self._starts, t)
        return self._starts[i] if i < len(self._starts) else self._end


class ScriptedPerson(_Segments):
    def __init__(self, segments: Iterable[tuple[float, float]], *, repeat: bool = False) -> None:
        super().__init__()
        self.segments = [(float(d), float(f)) for d, f in segments]
        if any(d < 0 or f < 0 for d, f in self.segments):
            raise ValueError("durations and forces must not be negative")
        self.repeat = repeat and sum(d for d, _ in self.segments) > 0
        for duration, force in self.segments:
            self._add(duration, force)

    def _extend(self) -> bool:
        if not self.repeat:
            return False
        for duration, force in self.segments:
            self._add(duration, force)
        return True


class RandomPerson(_Segments):
    def __init__(
        self,
        seed: int = 0,
        *,
        typical_n: float = 35.0,  # a firm but comfortable lean with a large head
        too_hard_n: float = 150.0,  # what "too hard" means for this person
        too_hard_chance: float = 0.1,  # of each hold
        start_after_s: float = 1.0,  # before the first contact
    ) -> None:
        super().__init__()
        self.rng = random.Random(f"gunsim-person/{seed}")
        self.typical_n = typical_n
        self.too_hard_n = too_hard_n
        self.too_hard_chance = too_hard_chance
        self._add(start_after_s, 0.0)

    def _extend(self) -> bool:
        rng = self.rng
        too_hard = rng.random() < self.too_hard_chance
        hold = self.too_hard_n if too_hard else self.typical_n * rng.uniform(0.6, 1.3)
        lean_s = rng.uniform(0.5, 1.5)
        for i in range(1, 5):  # lean in over four steps
            self._add(lean_s / 4, hold * i / 4)
        hold_s = rng.uniform(3.0, 8.0) if too_hard else rng.uniform(10.0, 45.0)
        while hold_s > 0:  # hold, wobbling a little every half second or so
            piece = min(hold_s, rng.uniform(0.3, 0.8))
            self._add(piece, hold * rng.uniform(0.9, 1.1))
            hold_s -= piece
        ease_s = rng.uniform(0.5, 1.5)
        for i in range(3, 0, -1):  # ease off
            self._add(ease_s / 4, hold * i / 4)
        self._add(rng.uniform(1.0, 5.0), 0.0)  # lift the gun and move to the next spot
        return True
