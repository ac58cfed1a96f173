"""``gunctl diary``: pain scores week by week, recording scores, and recording a visit.

``gunctl run`` asks for the scores in a terminal (``ask``); ``gunctl diary
score`` records one from a script, and ``gunctl diary seen`` records that a
doctor or physiotherapist has seen the person, which lifts a refusal by the
diary rules (gunctl.store.diary) and starts a new baseline.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gunctl.cli.output import diary_config_option, emit, json_option, to_text

if TYPE_CHECKING:
    from gunctl.store.diary import Week
    from gunctl.store.history import History, ProfessionalVisit

BAR = 20  # characters for a full-scale bar
CONFIG = "gunctl.diary.config"  # where the group keeps --config for its subcommands


def _pain(text: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > 10:
        raise click.UsageError(f"{text!r}: give a whole number from 0 to 10, or Enter to skip")
    return int(text)


def _reach(text: str) -> str | None:
    from gunctl.store.diary import Reach

    text = text.strip().lower().replace(" ", "_")
    if not text:
        return None
    if text not in set(Reach):
        raise click.UsageError(
            f"{text!r}: give one of {', '.join(r.value for r in Reach)}, or Enter to skip"
        )
    return text


def ask(history: History, moment: str, *, simulated: bool, session_id: int | None = None) -> int:
    """Ask for a pain score and how far it reaches, in the terminal; record the answer.

    Enter skips a question; both skipped is recorded as skipped. Returns the
    score's id.
    """
    when = "now, before the session" if moment == "before" else "now, after the session"
    click.echo(f"Diary: how is the pain {when}? (Enter skips a question)")
    pain = click.prompt(
        "  Pain, 0 (none) to 10 (worst)", default="", show_default=False, value_proc=_pain
    )
    reach = None
    if pain:  # where pain reaches only means something when there is pain
        reach = click.prompt(
            "  How far does it reach: buttock, thigh, below_knee or foot",
            default="",
            show_default=False,
            value_proc=_reach,
        )
    score_id = history.record_score(
        moment,  # type: ignore[arg-type]
        pain,
        reach,
        session_id=session_id,
        simulated=simulated,
    )
    click.echo("  Recorded." if pain is not None else "  Recorded as skipped.")
    return score_id


def _open(create: bool = False) -> History | None:
    """The history, judged on the thresholds of ``gunctl diary --config`` (or the variables)."""
    from gunctl.cli.history import open_history
    from gunctl.config import load_diary

    config_file = click.get_current_context().find_root().meta.get(CONFIG)
    return open_history(create=create, diary=load_diary(config_file))


kind_option = click.option(
    "--sim",
    "simulated",
    is_flag=True,
    help="The simulator's diary, kept apart from a person's (real sessions by default).",
)


@click.group(invoke_without_command=True)
@click.option(
    "--weeks",
    type=click.IntRange(1, 104),
    default=8,
    show_default=True,
    help="How many weeks back to show.",
)
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    metavar="FILE.png",
    help="Also draw the weeks as a picture (needs gunctl[plot]).",
)
@kind_option
@diary_config_option
@json_option
@click.pass_context
def diary(
    ctx: click.Context,
    weeks: int,
    plot: Path | None,
    simulated: bool,
    config_file: Path | None,
    as_json: bool,
) -> None:
    """Pain before and after sessions, and minutes per muscle, week by week.

    Below the chart: whether the diary rules refuse the next session, and why.
    The rules and their settings ([diary] in --config, or GUNCTL_DIARY_*) are
    described in docs/diary.md.
    """
    ctx.find_root().meta[CONFIG] = config_file
    if ctx.invoked_subcommand is not None:
        return
    from gunctl.store.diary import DiaryVerdict

    store = _open()
    verdict: DiaryVerdict | None = None
    rows: list[Week] = []
    visit: ProfessionalVisit | None = None
    if store is not None:
        with store:
            rows = store.weeks(weeks, simulated=simulated)
            verdict = store.diary_refusal(simulated=simulated)
            visit = store.last_professional(simulated=simulated)
    if plot is not None:
        from gunctl import plots

        plots.trend(rows, plot)
        click.echo(f"Wrote {plot}.", err=True)
    result = {
        "weeks": [w.model_dump(mode="json") for w in rows],
        "refusal": None
        if verdict is None
        else {"rule": verdict.rule, "message": verdict.message, "advice": verdict.advice},
        "professional_seen": None if visit is None else visit.model_dump(mode="json"),
    }
    emit(result, as_json, lambda _: _chart(rows, str(verdict) if verdict else None, visit))


def _bar(value: float | None, full: float, style: str) -> Any:
    from rich.text import Text

    if value is None:
        return Text("-", style="dim")
    cells = round(BAR * min(value, full) / full) if full else 0
    return Text.assemble(("█" * cells, style), f" {value:g}")


def _seen(visit: ProfessionalVisit) -> str:
    """The latest visit, as the chart's last line says it."""
    line = f"Professional last seen: {visit.recorded_at.astimezone():%Y-%m-%d %H:%M}"
    if visit.source is not None:
        line += f", recorded from {visit.source}"
    return f"{line} ({visit.note})" if visit.note else line


def _chart(weeks: list[Week], refusal: str | None, visit: ProfessionalVisit | None) -> str:
    from rich.console import Group
    from rich.table import Table

    if not any(w.sessions or w.before is not None or w.after is not None for w in weeks):
        lines: list[Any] = ["No sessions or scores in these weeks."]
    else:
        table = Table("days", "sessions", "pain before", "pain after", "minutes", box=None)
        most = max((w.total_minutes for w in weeks), default=0.0)
        for week in weeks:
            table.add_row(
                week.label,
                str(week.sessions),
                _bar(week.before, 10, "yellow"),
                _bar(week.after, 10, "green"),
                _bar(round(week.total_minutes, 1), most, "cyan"),
            )
        muscles = Table(
            "minutes per muscle side",
            *(w.label for w in weeks),
            box=None,
        )
        for muscle in sorted({m for w in weeks for m in w.minutes}):
            muscles.add_row(muscle, *(f"{w.minutes.get(muscle, 0.0):.1f}" for w in weeks))
        lines = [table, "", muscles]
    lines += [
        "",
        f"Refused until recorded: {refusal}" if refusal else "No diary rule refuses a session.",
    ]
    if visit is not None:
        lines.append(_seen(visit))
    return to_text(Group(*lines))


@diary.command("score")
@click.option("--before", "moment", flag_value="before", help="A score before the session.")
@click.option("--after", "moment", flag_value="after", help="A score after the session.")
@click.option(
    "--session",
    "session_id",
    type=int,
    help="The session it belongs to (default: a before-score for the next session, or an "
    "after-score for the latest session).",
)
@click.option("--pain", type=click.IntRange(0, 10), help="Pain, 0 (none) to 10 (worst).")
@click.option(
    "--reach",
    type=click.Choice(["buttock", "thigh", "below_knee", "foot"]),
    help="How far down the leg the pain reaches.",
)
@kind_option
def score(
    moment: str | None, session_id: int | None, pain: int | None, reach: str | None, simulated: bool
) -> None:
    """Record a pain score; with neither --pain nor --reach it is recorded as skipped."""
    if moment is None:
        raise click.UsageError("say which: --before or --after")
    store = _open(create=True)
    assert store is not None
    with store:
        if moment == "after" and session_id is None:
            latest = store.sessions(simulated=simulated)
            if not latest:
                raise click.UsageError("there is no session yet to score after")
            session_id = latest[-1].id
        store.record_score(moment, pain, reach, session_id=session_id, simulated=simulated)  # type: ignore[arg-type]
        verdict = store.diary_refusal(simulated=simulated)
    what = "skipped" if pain is None and reach is None else "recorded"
    target = f"session {session_id}" if session_id else "the next session"
    click.echo(f"Score {moment} {target} {what}.")
    if verdict is not None:
        click.echo(f"The next session will be refused: {verdict}", err=True)


@diary.command("seen")
@click.option("--note", default="", help="Who, and what they said (kept in the diary).")
@kind_option
def seen(note: str, simulated: bool) -> None:
    """Record that a doctor or physiotherapist has seen you: a new baseline for the rules."""
    store = _open(create=True)
    assert store is not None
    with store:
        store.record_professional(note, simulated=simulated, source="cli")
    click.echo(
        f"Recorded on {datetime.now().astimezone():%Y-%m-%d %H:%M}: the diary rules start a "
        "new baseline from here."
    )
