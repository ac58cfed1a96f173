"""The live display of a session: what the person holding the gun needs to see.

It is built from the session's events (step, head changes, cues, stops) and,
on every refresh, the Supervisor's latest telemetry. Head changes and cues are
drawn so they cannot be missed; everything else stays quiet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gunctl.control.events import Event, StepInfo
from gunctl.control.session import Phase
from gunctl.control.supervisor import Supervisor
from gunctl.redflags import STOP_RULE

# short enough for an 80-column terminal, borders included
KEYS_HELP = "space pause · n next · p sharp pain · Enter head on · q quit"


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


@dataclass
class View:
    supervisor: Supervisor
    protocol: str
    title: str
    keys: bool
    step: StepInfo | None = None
    head_change: StepInfo | None = None
    previous_head: str | None = None
    cue: str | None = None
    notice: str | None = None  # paused, pain, safety stop...
    ended: str | None = None
    lines: list[str] = field(default_factory=list)

    def update(self, event: Event) -> None:
        if event.type == "step_started":
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
        elif event.type == "session_completed":
            self.ended = "✓ session complete"
        elif event.type == "session_aborted":
            self.ended = f"■ session ended: {event.message}"

    def render(self) -> RenderableType:
        sup = self.supervisor
        session = sup.session
        plan = session.plan if session is not None else None
        total = len(plan.steps) if plan else 0
        body: list[RenderableType] = []
        if self.head_change is not None and self.ended is None:
            change = self.head_change
            was = f" (take off the {self.previous_head})" if self.previous_head else ""
            action = "then press Enter" if self.keys else "gunctl goes on by itself (--yes)"
            body.append(
                Panel(
                    Text(
                        f"Fit the {change.head.upper()} head{was}, {action}.\n"
                        f"Next: {change.muscle.replace('-', ' ')} ({change.side}) - "
                        f"{change.placement}",
                        style="bold",
                    ),
                    title="head change: the motor is stopped",
                    border_style="yellow",
                )
            )
        if self.step is not None:
            step = self.step
            body.append(
                Text.assemble(
                    (f"Step {step.index + 1}/{total}  ", "bold"),  # a pain stop skips steps
                    (
                        f"{step.muscle.replace('-', ' ')} · {step.side} · {step.head} head",
                        "bold cyan",
                    ),
                )
            )
            body.append(Text(step.placement, style="dim"))
        if session is not None and not session.done and session.step is not None:
            current = session.step
            phase_total = {
                Phase.RAMP_UP: current.ramp_s,
                Phase.HOLD: current.hold_s,
                Phase.RAMP_DOWN: current.ramp_s,
                Phase.REST: current.rest_s,
            }.get(session.phase, 0.0)
            bars = Table.grid(padding=(0, 1))
            bars.add_row(
                Text(f"{session.phase.value.replace('_', ' '):>10}"),
                ProgressBar(total=max(phase_total, 0.001), completed=session.phase_s, width=36),
                Text(f"{_clock(phase_total - session.phase_s)} left"),
            )
            planned = plan.planned_s if plan else 0.0
            bars.add_row(
                Text("   session"),
                ProgressBar(total=max(planned, 0.001), completed=session.active_s, width=36),
                Text(f"{_clock(session.session_remaining_s)} left"),
            )
            body.append(bars)
        body.append(self._telemetry())
        if self.cue:
            body.append(Text(f"▶ {self.cue}", style="bold magenta"))
        if session is not None and session.paused is not None and not session.done:
            how = "press space to go on, q to stop" if self.keys else "waiting to be resumed"
            body.append(Text(f"⏸ paused, motor stopped: {how}", style="bold yellow"))
        if self.notice:
            body.append(
                Text(self.notice, style="bold red" if "stop" in self.notice else "bold yellow")
            )
        if self.ended:
            body.append(Text(self.ended, style="bold green" if "✓" in self.ended else "bold red"))
        footer = KEYS_HELP if self.keys else STOP_RULE
        return Panel(
            Group(*body),
            title=f"gunctl · {self.title} on {sup.device_id} ({sup.spec.name})",
            subtitle=footer,
            border_style="cyan",
        )

    def _telemetry(self) -> Text:
        sup = self.supervisor
        t = sup.telemetry
        parts: list[str] = []
        setpoint = sup.driver.setpoint
        speed = t.get("speed_ppm")
        target = f"level {setpoint.level}" if setpoint.level else f"{setpoint.ppm} ppm"
        parts.append(
            f"speed {speed:.0f} ppm (set {target})" if speed is not None else f"set {target}"
        )
        for name, fmt in (
            ("force_n", "force {:.0f} N"),
            ("temperature_c", "motor {:.1f} °C"),
            ("battery_pct", "battery {:.0f} %"),
        ):
            value = t.get(name)
            if value is not None:
                parts.append(fmt.format(value))
        link = sup.link_stats
        state = "up" if sup.link.connected else "DOWN"
        parts.append(f"link {state}, {link.frames} frames, {link.decode_errors} bad")
        return Text(" · ".join(parts))
