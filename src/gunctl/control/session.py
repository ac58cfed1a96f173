"""The session: a plan played out over time, as a state machine with no I/O.

The Supervisor advances it once a tick and asks it how hard the motor should
run; the session answers with an intensity and raises events as it moves
through each step: head change (motor stopped until confirmed), ramp up, hold,
ramp down, rest. Keeping it free of I/O means every transition is tested
directly, and the Supervisor stays the only thing that touches a device.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

from gunctl.control.events import (
    Cue,
    Event,
    HeadChangeRequired,
    PainReported,
    Paused,
    Resumed,
    SessionCompleted,
    StepCompleted,
    StepInfo,
    StepStarted,
)
from gunctl.errors import RequestRefusedError
from gunctl.heads import Head
from gunctl.profiles.plan import Plan, PlannedStep

CUE_AT_S = 30.0
CUE = "If the pain is not easing, move the head a little to a nearby spot."


class Phase(StrEnum):
    HEAD_CHANGE = "head_change"  # waiting, motor stopped, for the person to fit a head
    RAMP_UP = "ramp_up"
    HOLD = "hold"
    RAMP_DOWN = "ramp_down"
    REST = "rest"
    DONE = "done"


MOTOR_PHASES = (Phase.RAMP_UP, Phase.HOLD, Phase.RAMP_DOWN)
TIMED_PHASES = frozenset((*MOTOR_PHASES, Phase.REST))  # phases that end when their time is up


class Session:
    def __init__(self, plan: Plan, device: str, emit: Callable[[Event], None]) -> None:
        self.plan = plan
        self.device = device
        self._emit = emit
        self.index = 0
        self.phase = Phase.HEAD_CHANGE
        self.phase_s = 0.0  # time spent in the current phase, pauses excluded
        self.paused: str | None = None  # the reason, while paused
        self.fitted: Head | None = None  # the head the person confirmed last
        self.worked: dict[tuple[str, str], float] = {}  # motor-on seconds per (muscle, side)
        self.step_worked = 0.0
        self.active_s = 0.0
        self.ended_muscles: set[str] = set()
        self._now = 0.0
        self._cued = False

    # -- what the Supervisor reads -------------------------------------------

    @property
    def step(self) -> PlannedStep | None:
        return self.plan.steps[self.index] if self.phase is not Phase.DONE else None

    @property
    def done(self) -> bool:
        return self.phase is Phase.DONE

    @property
    def holding_s(self) -> float | None:
        return self.phase_s if self.phase is Phase.HOLD else None

    @property
    def remaining_s(self) -> float:
        """Planned time left in the current step, pauses and head changes aside."""
        step = self.step
        if step is None:
            return 0.0
        lengths = {
            Phase.HEAD_CHANGE: 0.0,
            Phase.RAMP_UP: step.ramp_s,
            Phase.HOLD: step.hold_s,
            Phase.RAMP_DOWN: step.ramp_s,
            Phase.REST: step.rest_s,
        }
        order = list(lengths)
        left = lengths[self.phase] - self.phase_s
        return max(0.0, left + sum(lengths[p] for p in order[order.index(self.phase) + 1 :]))

    @property
    def session_remaining_s(self) -> float:
        """Planned time left in the session: the plan's length less the time it has run."""
        return max(0.0, self.plan.planned_s - self.active_s)

    def info(self, step: PlannedStep) -> StepInfo:
        return StepInfo(
            index=step.index,
            muscle=step.muscle,
            side=step.side,
            head=step.head.value,
            hold_s=step.hold_s,
            ppm=step.ppm,
            level=step.level,
            placement=step.placement,
            force_cap_n=step.force_cap_n,
        )

    # -- the clock -----------------------------------------------------------

    def start(self, now: float) -> None:
        self._now = now
        self._enter_step(0)

    def advance(self, now: float, dt: float, motor_on: bool) -> float:
        """Move time on by ``dt`` and return the intensity the motor should have now."""
        self._now = now
        if self.done or self.paused is not None or self.phase is Phase.HEAD_CHANGE:
            return 0.0
        self.active_s += dt
        step = self.plan.steps[self.index]
        if motor_on:
            key = (step.muscle, step.side)
            self.worked[key] = self.worked.get(key, 0.0) + dt
            self.step_worked += dt
        self.phase_s += dt
        while self._timed():
            step = self.plan.steps[self.index]
            phase = self.phase
            length = (
                step.hold_s
                if phase is Phase.HOLD
                else step.rest_s
                if phase is Phase.REST
                else step.ramp_s  # ramping up or down
            )
            if (
                self.phase is Phase.HOLD
                and not self._cued
                and step.hold_s > CUE_AT_S <= self.phase_s
            ):
                self._cued = True
                self._emit(Cue(at=now, device=self.device, message=CUE, step_index=step.index))
            if self.phase_s < length:
                break
            self.phase_s -= length
            self._next_phase()
        return self._intensity()

    def _timed(self) -> bool:
        """In a phase that ends by itself when its time is up."""
        return self.phase in TIMED_PHASES

    def _intensity(self) -> float:
        step = self.step
        if step is None or self.phase not in MOTOR_PHASES:
            return 0.0
        if self.phase is Phase.HOLD or step.ramp_s == 0:
            return step.intensity
        share = min(1.0, self.phase_s / step.ramp_s)
        return step.intensity * (share if self.phase is Phase.RAMP_UP else 1.0 - share)

    def _next_phase(self) -> None:
        following = {
            Phase.RAMP_UP: Phase.HOLD,
            Phase.HOLD: Phase.RAMP_DOWN,
            Phase.RAMP_DOWN: Phase.REST,
        }
        if self.phase in following:
            self.phase = following[self.phase]
        else:
            self._complete_step(skipped=False)

    def _complete_step(self, *, skipped: bool) -> None:
        step = self.plan.steps[self.index]
        self._emit(
            StepCompleted(
                at=self._now,
                device=self.device,
                step_index=step.index,
                muscle=step.muscle,
                side=step.side,
                worked_s=round(self.step_worked, 3),
                skipped=skipped,
            )
        )
        following = [
            s.index for s in self.plan.steps[self.index + 1 :] if s.muscle not in self.ended_muscles
        ]
        if following:
            self._enter_step(following[0])
        else:
            self.phase = Phase.DONE
            self._emit(
                SessionCompleted(
                    at=self._now, device=self.device, worked_s=round(sum(self.worked.values()), 3)
                )
            )

    def _enter_step(self, index: int) -> None:
        previous = self.plan.steps[self.index].head if index else None
        self.index, self.phase_s, self.step_worked, self._cued = index, 0.0, 0.0, False
        step = self.plan.steps[index]
        if step.head != self.fitted:
            self.phase = Phase.HEAD_CHANGE
            self._emit(
                HeadChangeRequired(
                    at=self._now,
                    device=self.device,
                    step=self.info(step),
                    previous_head=previous.value if previous else None,
                )
            )
        else:
            self._begin_motion()

    def _begin_motion(self) -> None:
        self.phase = Phase.RAMP_UP
        step = self.plan.steps[self.index]
        self._emit(StepStarted(at=self._now, device=self.device, step=self.info(step)))

    # -- requests ------------------------------------------------------------

    def note_time(self, now: float) -> None:
        """Events a request raises carry ``now``, not the time of the last tick."""
        self._now = now

    def confirm_head(self) -> None:
        if self.phase is not Phase.HEAD_CHANGE:
            raise RequestRefusedError("no head change is waiting to be confirmed")
        self.fitted = self.plan.steps[self.index].head
        self._begin_motion()

    def pause(self, reason: str = "requested") -> None:
        if self.done:
            raise RequestRefusedError("the session has ended")
        if self.paused is None:
            self.paused = reason
            self._emit(Paused(at=self._now, device=self.device, reason=reason))

    def resume(self) -> None:
        if self.paused is None:
            raise RequestRefusedError("the session is not paused")
        self.paused = None
        self._emit(Resumed(at=self._now, device=self.device))

    def skip(self) -> None:
        if self.done:
            raise RequestRefusedError("the session has ended")
        self._complete_step(skipped=True)

    def pain(self) -> None:
        """Sharp or shooting pain: this muscle is done for the session, and all waits."""
        step = self.step
        if step is None:
            raise RequestRefusedError("the session has ended")
        self.ended_muscles.add(step.muscle)
        self._emit(
            PainReported(
                at=self._now,
                device=self.device,
                step_index=step.index,
                muscle=step.muscle,
                side=step.side,
            )
        )
        self.pause("pain")
        self._complete_step(skipped=True)
