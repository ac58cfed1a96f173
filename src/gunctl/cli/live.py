"""The live display of a session: what the person holding the gun needs to see.

It is built from the session's events (step, head changes, cues, stops) and,
on every refresh, the gun's public state (:class:`~gunctl.state.GunState`).
Head changes and cues are drawn so they cannot be missed; everything else
stays quiet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gunctl.control.events import Event, StepInfo
from gunctl.redflags import STOP_RULE
from gunctl.state import GunState

# short enough for an 80-column terminal, borders included
KEYS_HELP = "space pause · n next · p sharp pain · Enter head on · q quit"


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


@dataclass
class View:
    state: Callable[[], GunState]  # the gun's state now, read at each refresh
    protocol: str
    title: str
    keys: bool
    steps: int = 0  # in the plan, from the session's start
    step: StepInfo | None = None
    head_change: StepInfo | None = None
    previous_head: str | None = None
    cue: str | None = None
    notice: str | None = None  # paused, pain, safety stop...
    ended: str | None = None
    lines: list[str] = field(default_factory=list)

    def update(self, event: Event) -> None:
        if event.type == "session_started":
            self.steps = event.steps
        elif event.type == "step_started":
            self.step, self.head_change, self.cue, self.notice = event.step, None, None, None
        elif event.type == "head_change_required":
            self.head_change, self.previous_head = event.step, event.previous_head
            self.step, self.cue = event.step, None  # the motor is stopped: no cue to follow
        elif event.type == "cue":
            self.cue = event.message
        elif event.type == "warning":
            self.notice = f"⚠ {event.message}"
        elif event.type == "pain_reported":
            muscle = event.muscle.replace("-", " ")
            self.notice = f"sharp pain noted: {muscle} {event.side} is done for today"
        elif event.type == "step_completed":
            self.cue = None
        elif event.type == "safety_stop":
            self.notice = f"■ safety stop ({event.rule}): {event.message}"
        else:
            self._end(event)

    def _end(self, event: Event) -> None:
        if event.type == "session_completed":
            self.ended = "✓ session complete"
        elif event.type == "session_aborted":
            self.ended = f"■ session ended: {event.message}"

    def render(self) -> RenderableType:
        state = self.state()
        body: list[RenderableType] = [
            *self._head_change(),
            *self._step(),
            *self._bars(state),
            self._telemetry(state),
            *self._notices(state),
        ]
        footer = KEYS_HELP if self.keys else STOP_RULE
        return Panel(
            Group(*body),
            title=f"gunctl · {self.title} on {state.device} ({state.spec})",
            subtitle=footer,
            border_style="cyan",
        )

    def _head_change(self) -> list[RenderableType]:
        if self.head_change is None or self.ended is not None:
            return []
        change = self.head_change
        was = f" (take off the {self.previous_head})" if self.previous_head else ""
        action = "then press Enter" if self.keys else "gunctl goes on by itself (--yes)"
        text = Text(
            f"Fit the {change.head.upper()} head{was}, {action}.\n"
            f"Next: {change.muscle.replace('-', ' ')} ({change.side}) - {change.placement}",
            style="bold",
        )
        return [Panel(text, title="head change: the motor is stopped", border_style="yellow")]

    def _step(self) -> list[RenderableType]:
        step = self.step
        if step is None:
            return []
        where = f"{step.muscle.replace('-', ' ')} · {step.side} · {step.head} head"
        return [
            Text.assemble(
                (f"Step {step.index + 1}/{self.steps}  ", "bold"),  # a pain stop skips steps
                (where, "bold cyan"),
            ),
            Text(step.placement, style="dim"),
        ]

    @staticmethod
    def _bars(state: GunState) -> list[RenderableType]:
        step = state.step
        if step is None:
            return []
        bars = Table.grid(padding=(0, 1))
        bars.add_row(
            Text(f"{step.phase.replace('_', ' '):>10}"),
            ProgressBar(total=max(step.phase_total_s, 0.001), completed=step.phase_s, width=36),
            Text(f"{_clock(step.phase_total_s - step.phase_s)} left"),
        )
        bars.add_row(
            Text("   session"),
            ProgressBar(
                total=max(state.session_planned_s or 0.0, 0.001),
                completed=state.session_active_s or 0.0,
                width=36,
            ),
            Text(f"{_clock(state.session_remaining_s or 0.0)} left"),
        )
        return [bars]

    def _notices(self, state: GunState) -> list[RenderableType]:
        lines: list[RenderableType] = []
        if self.cue:
            lines.append(Text(f"▶ {self.cue}", style="bold magenta"))
        if state.paused:
            how = "press space to go on, q to stop" if self.keys else "waiting to be resumed"
            lines.append(Text(f"⏸ paused, motor stopped: {how}", style="bold yellow"))
        if self.notice:
            style = "bold red" if "stop" in self.notice else "bold yellow"
            lines.append(Text(self.notice, style=style))
        if self.ended:
            lines.append(Text(self.ended, style="bold green" if "✓" in self.ended else "bold red"))
        return lines

    @staticmethod
    def _telemetry(state: GunState) -> Text:
        parts: list[str] = []
        speed = state.speed_ppm
        level = state.setpoint_level
        target = f"level {level}" if level else f"{state.setpoint_ppm} ppm"
        parts.append(
            f"speed {speed:.0f} ppm (set {target})" if speed is not None else f"set {target}"
        )
        for value, fmt in (
            (state.force_n, "force {:.0f} N"),
            (state.temperature_c, "motor {:.1f} °C"),
            (state.battery_pct, "battery {:.0f} %"),
        ):
            if value is not None:
                parts.append(fmt.format(value))
        link = "up" if state.connected else "DOWN"
        parts.append(f"link {link}, {state.frames} frames, {state.bad_frames} bad")
        return Text(" · ".join(parts))
