"""Refusals counted, logged in aggregate, and answers to junk rationed, from either thread.

Junk is refused in two places. Most of it in the commands process
(:mod:`gunctl.mqtt.screen`), before it costs the daemon anything: that
process keeps a tally of its own, in its network thread, logs from it and
tells the daemon its counts, which the daemon's tally adds (:meth:`Tally.add`).
The rest (retained stops on the stop line, commands a gun refuses) is refused
on the daemon's event loop. Each tally counts under a lock, so the diagnostics
see one set of numbers. The log gets the first refusal of a quiet spell in
full and then one summary line per :data:`LOG_EVERY_S` with the count per
reason, never one line per message.

Answers are rationed, so that what anyone allowed to publish sends never
turns into as many messages (or twice as many) from gunctl, crowding out the
events and results of real commands. Refusals of junk are answered at most
:data:`JUNK_ANSWERS_PER_S` a second, and not while more than :data:`BACKLOG`
messages wait to go out or to be read (a flood). A command that a gun's lane
took and refused (a start while a session runs, say) is answered with a
result and an event, at most :data:`REFUSAL_ANSWERS_PER_S` a second for each
gun, and not while more than :data:`BACKLOG` wait: more than a person or an
automation sends, and a flood of valid starts costs a few answers, not two
messages each (events are never dropped from the outbox, so they must be
bounded where they are made). Refusals past a ration are counted
(``unanswered``) but not answered. A stop's result is never rationed.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable

import structlog

from gunctl.requests import REASONS, CommandError

log = structlog.get_logger("gunctl.mqtt")

LOG_EVERY_S = 10.0  # at most one line per refusal this often; the rest in a summary line
# messages waiting to go out or to be read: past this, no refusal but a stop's is answered
BACKLOG = 100
JUNK_ANSWERS_PER_S = 100  # refusals of junk answered a second (in bursts of as many)
REFUSAL_ANSWERS_PER_S = 20  # refusals by a gun's lane answered a second, for each gun


class _Ration:
    """A token bucket: ``per_s`` a second, in bursts of as many; under the tally's lock."""

    __slots__ = ("_at", "_left", "_per_s")

    def __init__(self, per_s: float) -> None:
        self._per_s = self._left = float(per_s)
        self._at = time.monotonic()

    def take(self, now: float) -> bool:
        self._left = min(self._per_s, self._left + (now - self._at) * self._per_s)
        self._at = now
        if self._left < 1:
            return False
        self._left -= 1
        return True


class Tally:
    def __init__(self, devices: Iterable[str], backlog: Callable[[], int]) -> None:
        """``devices``: the guns served (counted one by one; never an id a stranger sends
        to, which would grow without bound); ``backlog``: the longer of the outbox and
        the queue of messages read but not taken."""
        self._lock = threading.Lock()
        self._backlog = backlog
        self._rejected: Counter[str] = Counter({reason: 0 for reason in REASONS})
        self._by_device = {device: Counter(commands=0, refused=0) for device in devices}
        self._unanswered = 0
        self._junk = _Ration(JUNK_ANSWERS_PER_S)
        self._refusals = {device: _Ration(REFUSAL_ANSWERS_PER_S) for device in devices}
        self._logged_at = -LOG_EVERY_S
        self._unlogged: Counter[str] = Counter()

    def taken(self, device_id: str) -> None:
        """A command handed to ``device_id``'s lane."""
        with self._lock:
            self._by_device[device_id]["commands"] += 1

    def refused(self, exc: CommandError, device_id: str | None) -> None:
        """Count a refusal; log it in full if it is the first of a quiet spell."""
        with self._lock:
            self._rejected[exc.reason] += 1
            if device_id in self._by_device:
                self._by_device[device_id]["refused"] += 1
            now = time.monotonic()
            if now - self._logged_at < LOG_EVERY_S:
                self._unlogged[exc.reason] += 1
                return
            self._logged_at = now
            unlogged, self._unlogged = self._unlogged, Counter()
        _summary(unlogged)
        log.warning("command_rejected", device=device_id, reason=exc.reason, error=exc.message)

    def add(self, rejected: dict[str, int], refused: dict[str, int], unanswered: int) -> None:
        """Add what the commands process counted since it last said (it logs its own)."""
        with self._lock:
            self._rejected.update(rejected)
            for device_id, count in refused.items():
                if device_id in self._by_device:
                    self._by_device[device_id]["refused"] += count
            self._unanswered += unanswered

    def answer_junk(self) -> bool:
        """Whether a refusal of junk is answered: not in a flood, and not too many a second.

        One not answered is counted (``unanswered``).
        """
        return self._answer(self._junk)

    def answer_refusal(self, device_id: str) -> bool:
        """Whether a refusal by ``device_id``'s lane is answered: not in a flood, and not
        too many a second for that gun.

        One not answered is counted (``unanswered``).
        """
        return self._answer(self._refusals[device_id])

    def _answer(self, ration: _Ration) -> bool:
        backlog = self._backlog()
        with self._lock:
            if backlog > BACKLOG or not ration.take(time.monotonic()):
                self._unanswered += 1
                return False
            return True

    def flush_log(self, shed: int = 0) -> None:
        """Log the refusals not logged one by one (and ``shed`` more unread) as one line."""
        with self._lock:
            unlogged, self._unlogged = self._unlogged, Counter()
        if shed:
            unlogged["overloaded"] += shed
        _summary(unlogged)

    @property
    def rejected(self) -> dict[str, int]:
        with self._lock:
            return dict(self._rejected)

    @property
    def unanswered(self) -> int:
        return self._unanswered

    def of(self, device_id: str) -> dict[str, int]:
        """What ``device_id`` was sent: commands taken, and refusals."""
        with self._lock:
            return dict(self._by_device[device_id])


def _summary(unlogged: Counter[str]) -> None:
    if unlogged:
        log.warning("commands_rejected", by_reason=dict(sorted(unlogged.items())))
