"""Pictures of the diary and of one session, as PNG files (matplotlib, an optional extra).

matplotlib is heavy, so the core install leaves it out: ``pip install
gunctl[plot]`` adds it, and without it these functions say so. Nothing here
reads the history; the callers hand over what to draw.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gunctl.errors import GunctlError

if TYPE_CHECKING:
    from gunctl.store.diary import Week
    from gunctl.store.history import SessionRecord
    from gunctl.store.trace import Trace

SIZE_IN = (10.0, 6.0)
DPI = 100  # 1000 x 600 pixels


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise GunctlError(
            "--plot needs matplotlib, which the core install leaves out",
            "pip install 'gunctl[plot]'",
        ) from None
    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    try:
        fig.savefig(path, dpi=DPI)
    except OSError as exc:
        raise GunctlError(f"cannot write {path} ({exc.strerror or exc})") from None
    finally:
        _pyplot().close(fig)


def trend(
    weeks: Sequence[Week], path: Path, *, title: str = "Pain and massage, week by week"
) -> None:
    """Weekly mean pain before and after sessions (lines), minutes per muscle side (bars)."""
    plt = _pyplot()
    fig, (pain, minutes) = plt.subplots(2, 1, figsize=SIZE_IN, sharex=True)
    x = list(range(len(weeks)))
    for moment, style in (("before", "o-"), ("after", "s--")):
        values = [getattr(w, moment) for w in weeks]
        points = [(i, v) for i, v in zip(x, values, strict=True) if v is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            pain.plot(xs, ys, style, label=f"pain {moment} sessions", linewidth=2)
    pain.set_ylim(0, 10)
    pain.set_ylabel("pain (0-10)")
    if pain.get_legend_handles_labels()[0]:
        pain.legend(loc="upper right")
    pain.set_title(title)
    pain.grid(alpha=0.3)
    muscles = sorted({m for w in weeks for m in w.minutes})
    bottom = [0.0] * len(weeks)
    for muscle in muscles:
        values = [w.minutes.get(muscle, 0.0) for w in weeks]
        minutes.bar(x, values, bottom=bottom, label=muscle)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    minutes.set_ylabel("minutes")
    minutes.set_xticks(x, [w.label for w in weeks])
    if muscles:
        minutes.legend(loc="upper left", fontsize="small", ncol=2)
    fig.tight_layout()
    _save(fig, path)


def session(record: SessionRecord, trace: Trace, path: Path) -> None:
    """Speed and force against each step's cap, temperature, and the stops, over session time."""
    plt = _pyplot()
    fig, (speed, force, heat) = plt.subplots(3, 1, figsize=SIZE_IN, sharex=True)
    t0 = trace.samples[0].at if trace.samples else 0.0
    starts = [m for m in trace.marks if m.kind == "step"]
    t0 = min([t0, *(m.at for m in starts)])
    times = [s.at - t0 for s in trace.samples]
    end = max([*times, *(m.at - t0 for m in trace.marks), 1.0])

    def line(axis: Any, field: str, label: str, colour: str) -> None:
        points = [(t, getattr(s, field)) for t, s in zip(times, trace.samples, strict=True)]
        points = [(t, v) for t, v in points if v is not None]
        if points:
            xs, ys = zip(*points, strict=True)
            axis.plot(xs, ys, color=colour, label=label, linewidth=1.5)

    line(speed, "speed_ppm", "speed", "tab:blue")
    line(force, "force_n", "force", "tab:green")
    line(heat, "temperature_c", "motor temperature", "tab:red")
    for n, mark in enumerate(starts):  # each step's cap, from its start to the next
        until = starts[n + 1].at - t0 if n + 1 < len(starts) else end
        span = [mark.at - t0, until]
        speed.plot(
            span, [mark.values.get("ppm")] * 2, "k:", label="step setpoint" if not n else None
        )
        cap = mark.values.get("force_cap_n")
        if cap is not None:
            force.plot(span, [cap] * 2, "r:", label="force cap" if not n else None)
        speed.annotate(mark.label, (mark.at - t0, 0), fontsize="x-small", rotation=90, va="bottom")
    for mark in trace.marks:
        if mark.kind in ("safety_stop", "pain"):
            for axis in (speed, force, heat):
                axis.axvline(mark.at - t0, color="red", linewidth=1.5)
            speed.annotate(
                f"{'stop' if mark.kind == 'safety_stop' else 'pain'}: {mark.label}",
                (mark.at - t0, speed.get_ylim()[1]),
                color="red",
                fontsize="small",
                va="top",
            )
    speed.set_ylabel("ppm")
    force.set_ylabel("N")
    heat.set_ylabel("°C")
    heat.set_xlabel("session seconds")
    for axis in (speed, force, heat):
        axis.set_xlim(0, end)
        axis.grid(alpha=0.3)
        if axis.get_legend_handles_labels()[0]:
            axis.legend(loc="upper right", fontsize="small")
    when = record.started_at.astimezone().strftime("%Y-%m-%d %H:%M")
    speed.set_title(f"Session {record.id}: {record.protocol} on {record.device}, {when}")
    fig.tight_layout()
    _save(fig, path)
