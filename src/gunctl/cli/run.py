"""``gunctl run``: one session from the terminal, with a live display and keys.

Before anything moves: the warning signs (any yes and gunctl refuses), the
plan, and the 48-hour exposure check. While it runs: a live display, keys for
pause, next, sharp pain and quit, and Ctrl-C or SIGTERM stopping the motor
before anything else. Every session is recorded in the history as it goes.

Exit codes (gunctl.errors): 0 completed; 2 invalid input; 3 ended by a safety
stop (the rule is named on stderr) or refused by one; 4 device unreachable or
link lost; 5 the data folder or history cannot be used; 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
import termios
import tty
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gunctl.cli.output import diary_config_option, to_text, warn_problems
from gunctl.cli.proxies import opened, proxy_option
from gunctl.errors import (
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_SAFETY,
    EXIT_UNREACHABLE,
    UnknownNameError,
)

if TYPE_CHECKING:
    from gunctl.control.events import Event
    from gunctl.devices import Device
    from gunctl.links.proxy import Proxies
    from gunctl.links.proxy_config import ProxyConfig
    from gunctl.profiles.loader import Catalogue
    from gunctl.profiles.models import Protocol
    from gunctl.profiles.plan import ExposureCheck, Plan
    from gunctl.specs.models import DeviceSpec
    from gunctl.store.history import ExposureView, History


KEY_ACTIONS = {
    " ": "toggle_pause",
    "n": "skip",
    "p": "pain_stop",
    "\r": "confirm_head",
    "\n": "confirm_head",
    "q": "quit",
}


@dataclass(frozen=True)
class Options:
    protocol: str
    sim: bool
    device: str | None
    spec: str | None
    side: str
    intensity_cap: float
    heads: tuple[str, ...] | None
    time_scale: float
    as_json: bool
    yes: bool
    profiles: Path | None
    seed: int
    proxies: list[ProxyConfig]
    scan_timeout: float
    config_file: Path | None


def _heads(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    from gunctl.datafile import suggest
    from gunctl.heads import Head

    names = tuple(h.strip() for h in value.split(",") if h.strip())
    known = [h.value for h in Head]
    for name in names:
        if name not in known:
            raise click.BadParameter(f"unknown head {name!r}{suggest(name, known)}")
    return names


@click.command()
@click.argument("protocol")
@click.option("--sim", is_flag=True, help="Run on the in-process simulated gun.")
@click.option("--device", metavar="ADDRESS_OR_NAME", help="Run on a BLE gun, by address or name.")
@click.option(
    "--spec",
    metavar="NAME",
    help="Firmware spec: the simulated family, or to force one for --device.",
)
@click.option(
    "--side", type=click.Choice(["left", "right", "both"]), default="both", show_default=True
)
@click.option(
    "--intensity-cap",
    type=click.FloatRange(0.0, 1.0, min_open=True),
    default=1.0,
    show_default=True,
    help="Your own cap on intensity (0..1); the muscles' caps apply as well.",
)
@click.option(
    "--heads",
    callback=_heads,
    metavar="HEAD,...",
    help="The heads you own, e.g. ball,bullet,thumb.",
)
@click.option(
    "--time-scale",
    type=click.FloatRange(0.0, 100.0, min_open=True),
    default=1.0,
    help="Run the simulator faster than real time (demos). Refused for a real device.",
)
@click.option("--json", "as_json", is_flag=True, help="Newline-delimited JSON events on stdout.")
@click.option(
    "--yes", is_flag=True, help="State that none of the warning signs apply (for scripts)."
)
@click.option(
    "--profiles",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    envvar="GUNCTL_PROFILES",
    help="A folder of your own muscles.yaml and protocols/ that override the shipped ones.",
)
@click.option("--seed", type=int, default=0, help="Seed for the simulated gun and person.")
@proxy_option
@click.option(
    "--scan-timeout",
    type=click.FloatRange(0.1, 120),
    default=10.0,
    show_default=True,
    help="Seconds to look for --device before giving up.",
)
@diary_config_option
def run(**kwargs: object) -> None:
    """Run PROTOCOL (e.g. glute) on a gun, with a live display.

    Keys: space pauses and resumes, n goes to the next step, p means sharp or
    shooting pain (stops at once; that muscle side is skipped until midnight),
    Enter confirms a head change, q quits. Ctrl-C stops the motor first.
    """
    options = Options(**kwargs)  # type: ignore[arg-type]
    if options.sim == (options.device is not None):
        raise click.UsageError("choose one of --sim (the simulator) or --device ADDRESS_OR_NAME")
    if options.sim and options.proxies:
        raise click.UsageError("--proxy reaches real guns: use it with --device, not --sim")
    if options.device is not None and options.time_scale != 1.0 and not _fake_bluez(options):
        raise click.UsageError(
            "--time-scale is only for the simulator (or gunsim's fake BlueZ on its private "
            "bus): a real session runs in real time"
        )
    # Keys need a terminal on stdin; the live display needs one on stdout.
    keys = sys.stdin.isatty() and not options.as_json
    if not keys and not options.yes:
        raise click.UsageError(
            "with no terminal for keys (or with --json), pass --yes to state that none of the "
            "warning signs apply; head changes then go on by themselves"
        )
    from gunctl.devices import DEFAULT_SIM_SPEC
    from gunctl.specs.loader import get_spec

    prepared = _prepare(options)
    with contextlib.closing(prepared.history):
        # Everything that can refuse the session without a gun is checked first; a
        # found gun's spec is known only once it is found, but heads, pain and exposure are.
        spec = get_spec(options.spec or DEFAULT_SIM_SPEC)
        prepared.check(spec, show=options.sim or options.spec is not None)
        if not _screen(options, keys):
            sys.exit(EXIT_INVALID)
        # The diary asks in a terminal, of sessions in real time: a demo asks no one.
        asking = keys and options.time_scale == 1.0
        if asking:
            from gunctl.cli.diary import ask

            kind = prepared.exposure.simulated
            prepared.before_score = ask(prepared.history, "before", simulated=kind)
            prepared.refuse_by_diary()  # a severe score refuses this very session
        code = asyncio.run(_run_through_proxies(options, keys, prepared))
        if asking and prepared.session_id is not None:
            ask(prepared.history, "after", simulated=kind, session_id=prepared.session_id)
        sys.exit(code)


def _fake_bluez(options: Options) -> bool:
    """Whether BlueZ is on a bus of its own (``gunsim bluez`` makes one), not the system's.

    Only then may a ``--device`` session run faster than real time: a real gun
    is on the system bus, and never runs scaled.
    """
    bus = os.environ.get("DBUS_SYSTEM_BUS_ADDRESS", "")
    return bool(bus) and "/run/dbus/system_bus_socket" not in bus and not options.proxies


def _screen(options: Options, keys: bool) -> bool:
    """Show the warning signs; in a terminal, ask. Any yes refuses the session."""
    from gunctl.redflags import ADVICE, NOT_MEDICAL_ADVICE, RED_FLAGS

    out = sys.stderr if options.as_json else sys.stdout
    click.echo(NOT_MEDICAL_ADVICE, file=out)
    click.echo("Before you start, check for these warning signs:", file=out)
    for flag in RED_FLAGS:
        click.echo(f"  - {flag}", file=out)
    if options.yes:
        click.echo("(--yes: you have stated that none of these apply)", file=out)
        return True
    assert keys
    if click.confirm("Do any of these apply to you now?", default=False):
        click.echo(ADVICE)
        return False
    return True


@dataclass
class Prepared:
    """What a session needs before any gun is reached, each part already checked."""

    options: Options
    catalogue: Catalogue
    protocol: Protocol
    history: History
    exposure: ExposureView
    before_score: int | None = None  # the diary's score before, given ahead of the session
    session_id: int | None = None  # the session, once the Supervisor has taken it

    def refuse_by_diary(self) -> None:
        """Raise SafetyStopError (exit 3) when a diary rule refuses the session, saying why."""
        from gunctl.errors import SafetyStopError

        verdict = self.exposure.diary_refusal()
        if verdict is not None:
            raise SafetyStopError(
                verdict.rule,
                verdict.message,
                advice=verdict.advice,
                what=f"refused: {verdict.rule}: {verdict.message}",
            )

    def check(self, spec: DeviceSpec, *, show: bool) -> Plan:
        """The plan for ``spec``: the diary, heads, caps, pain blocks and exposure checked.

        Raises PlanError (exit 2) or SafetyStopError (exit 3) when the session
        may not start; ``show`` prints the plan summary.
        """
        from gunctl.errors import SafetyStopError
        from gunctl.heads import Head
        from gunctl.profiles.plan import BlockedToday, exposure_checks, make_plan

        options = self.options
        self.refuse_by_diary()
        try:
            plan = make_plan(
                self.protocol,
                self.catalogue.muscles,
                spec,
                side=options.side,  # type: ignore[arg-type]
                user_cap=options.intensity_cap,
                owned_heads=None if options.heads is None else {Head(h) for h in options.heads},
                blocked=self.exposure.pain_blocks(),
            )
        except BlockedToday as exc:
            raise SafetyStopError("pain_block", str(exc), what=f"refused: {exc}") from None
        checks = exposure_checks(plan, self.exposure.exposure_s)
        if show:
            _summary(plan, checks, options)
        over = [c for c in checks if c.over]
        if over:
            first = over[0]
            message = (
                f"{first.muscle} ({first.side}) has had {first.prior_s:.0f} s in the last 48 "
                f"hours; this session would add {first.planned_s:.0f} s, over its "
                f"{first.limit_s:.0f} s cap"
            )
            raise SafetyStopError(
                "exposure_48h",
                message,
                advice="give it a rest day",
                what=f"safety stop: exposure_48h: {message}",
            )
        return plan


def _prepare(options: Options) -> Prepared:
    """The protocol, the history and the right exposure ledger; a bad one exits here."""
    from gunctl.config import load_diary
    from gunctl.datafile import suggest
    from gunctl.errors import GunctlError
    from gunctl.profiles.loader import load_catalogue
    from gunctl.store.history import History

    catalogue = load_catalogue(options.profiles, partial=True)
    warn_problems(catalogue.problems)
    protocol = catalogue.protocols.get(options.protocol)
    if protocol is None:
        hint = suggest(options.protocol, catalogue.protocols)
        raise GunctlError(
            f"no protocol named {options.protocol!r}{hint}", "`gunctl profiles list` shows them"
        )
    history = History(diary=load_diary(options.config_file))
    # a demo's time never counts toward a person's, nor theirs toward a demo's
    exposure = history.exposure(simulated=options.sim or options.time_scale != 1.0)
    return Prepared(options, catalogue, protocol, history, exposure)


async def _run_through_proxies(options: Options, keys: bool, prepared: Prepared) -> int:
    from gunctl.cli.boundary import quiet_background_errors

    quiet_background_errors()
    async with opened(options.proxies) as proxies:
        return await _run(options, keys, prepared, proxies)


async def _run(options: Options, keys: bool, prepared: Prepared, proxies: Proxies | None) -> int:
    from gunctl.clock import Clock
    from gunctl.devices import DEFAULT_SIM_SPEC, connect_ble, connect_sim
    from gunctl.links.base import LinkError

    clock = Clock(options.time_scale)
    exposure = prepared.exposure
    try:
        if options.sim:
            device = await connect_sim(
                options.spec or DEFAULT_SIM_SPEC,
                clock=clock,
                device_id="sim-1",
                seed=options.seed,
                exposure=exposure,
            )
        else:
            assert options.device is not None
            device = await connect_ble(
                options.device,
                clock=clock,
                spec_name=options.spec,
                exposure=exposure,
                proxies=proxies,
                timeout=options.scan_timeout,
            )
    except UnknownNameError as exc:
        click.echo(f"gunctl: {exc}", err=True)
        return EXIT_INVALID
    except LinkError as exc:
        click.echo(f"gunctl: cannot reach {options.device or 'the simulator'}: {exc}", err=True)
        return EXIT_UNREACHABLE
    try:
        # checked again: time has passed, and a found gun's spec is known only now;
        # in a worker thread, since the Supervisor is already running on this loop
        show = not (options.sim or options.spec)
        plan = await asyncio.to_thread(prepared.check, device.spec, show=show)
        return await _supervise(device, plan, prepared, keys)
    finally:
        await device.aclose()


def _summary(plan: Plan, checks: list[ExposureCheck], options: Options) -> None:
    from rich.table import Table

    from gunctl.units import duration

    table = Table(
        "#", "muscle", "side", "head", "speed", "hold", "capped by", box=None, title=plan.title
    )
    for step in plan.steps:
        speed = f"level {step.level}" if step.level else f"{step.ppm} ppm"
        table.add_row(
            str(step.index + 1),
            step.muscle,
            step.side,
            step.head.value,
            speed,
            f"{step.hold_s:g} s",
            step.binding,
        )
    exposure = ", ".join(
        f"{c.muscle} {c.side} {c.prior_s:.0f}+{c.planned_s:.0f}/{c.limit_s:.0f} s"
        for c in checks
        if c.prior_s
    )
    lines = [
        to_text(table),
        *(f"skipped: {skipped} (a pain stop blocks it until midnight)" for skipped in plan.skipped),
        f"About {duration(plan.planned_s)}. Heads: {', '.join(h.value for h in plan.heads)}.",
    ]
    lines.append(
        f"Last 48 hours: {exposure}."
        if exposure
        else "Last 48 hours: nothing recorded on these muscles."
    )
    click.echo("\n".join(lines), file=sys.stderr if options.as_json else sys.stdout)


async def _supervise(device: Device, plan: Plan, prepared: Prepared, keys: bool) -> int:
    from gunctl.control.events import ENDING_EVENTS
    from gunctl.errors import RequestRefusedError
    from gunctl.requests import SessionAction, Start

    history, options = prepared.history, prepared.options
    events = device.subscribe()
    followed = device.subscribe()  # the history's, taken before the start: no event is missed
    interrupted: list[str] = []
    loop = asyncio.get_running_loop()
    background: set[asyncio.Task[None]] = set()

    def spawn(coro: Coroutine[Any, Any, None]) -> None:
        """Run a request without blocking the caller (a key or a signal handler)."""
        task = loop.create_task(coro)
        background.add(task)
        task.add_done_callback(background.discard)

    async def stop_first(reason: str) -> None:
        interrupted.append(reason)
        with contextlib.suppress(Exception):
            if reason == "quit":
                await device.request(SessionAction("stop", "quit", "you quit (q)"))
            else:
                await device.request(SessionAction("stop", "stopped", f"stopped by {reason}"))

    def on_signal(sig: signal.Signals) -> None:
        spawn(stop_first(sig.name))

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, on_signal, sig)

    async def send(kind: str) -> None:
        with contextlib.suppress(Exception):
            await device.request(SessionAction(kind))  # type: ignore[arg-type]

    from gunctl.cli.live import View

    view = View(device.state, plan.protocol, plan.title, keys=keys)
    live = sys.stdout.isatty() and not options.as_json
    end: Event | None = None

    async def consume() -> Event:
        async for event in events:
            view.update(event)
            if options.as_json:
                sys.stdout.write(json.dumps(event.model_dump(mode="json")) + "\n")
                sys.stdout.flush()
            elif not live:
                click.echo(_line(event))
            if event.type == "head_change_required" and not keys:
                if device.sim is not None:
                    from gunctl.heads import Head

                    device.sim.fit_head(Head(event.step.head))
                spawn(send("confirm_head"))
            if isinstance(event, ENDING_EVENTS):
                return event
        raise RuntimeError("the event stream ended before the session did")

    def on_key(action: str) -> None:
        if action == "toggle_pause":
            spawn(send("resume" if device.state().paused else "pause"))
        elif action == "quit":
            spawn(stop_first("quit"))
        elif action == "confirm_head":
            if device.sim is not None and view.head_change is not None:
                from gunctl.heads import Head

                device.sim.fit_head(Head(view.head_change.head))
            spawn(send("confirm_head"))
        else:
            spawn(send(action))

    try:
        await device.request(Start(plan))
        session_id = await device.begin_session(
            history,
            plan,
            side=options.side,
            intensity_cap=options.intensity_cap,
            source="cli",
            scale=options.time_scale,
            before_score=prepared.before_score,
        )
    except BaseException as exc:
        followed.close()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if not isinstance(exc, RequestRefusedError):
            await device.aclose()  # a session that cannot be recorded does not run
            raise
        click.echo(f"gunctl: refused: {exc}", err=True)  # another session booked it meanwhile
        return EXIT_SAFETY
    recorder = asyncio.create_task(
        device.record(history, followed, session_id, scale=options.time_scale)
    )
    prepared.session_id = session_id
    try:
        if live:
            from rich.live import Live

            with (
                _keys(loop, on_key, enabled=keys),
                Live(get_renderable=view.render, refresh_per_second=8, screen=False),
            ):
                end = await consume()
                await _spun_down(device)  # the last frame shows the motor as it really is
        else:
            end = await consume()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await device.aclose()  # the motor stops before the history catches up
        record = None
        with contextlib.suppress(Exception):
            async with asyncio.timeout(5):
                record = await recorder
    if record is not None and not options.as_json:
        from rich.console import Group

        from gunctl.cli.history import describe_session

        click.echo(to_text(Group("", *describe_session(record))))
        click.echo("`gunctl history` lists every session.")
    return _exit_code(end, interrupted)


async def _spun_down(device: Device, within_s: float = 3.0) -> None:
    """Wait (real time, bounded) until the motor reports it has stopped turning."""
    for _ in range(int(within_s / 0.1)):
        speed = device.state().speed_ppm
        if speed is None or speed < 1:
            break
        await asyncio.sleep(0.1)
    await asyncio.sleep(0.2)  # one more refresh of the display


def _exit_code(end: Event | None, interrupted: list[str]) -> int:
    if interrupted or end is None:
        return EXIT_INTERRUPTED
    if end.type == "session_completed":
        return EXIT_OK
    reason = getattr(end, "reason", "")
    message = getattr(end, "message", "")
    if reason in ("link_lost", "link_error", "write_unanswered"):  # gone, failing or hung: 4
        click.echo(f"gunctl: link lost: {message} — check the gun is on and in range", err=True)
        return EXIT_UNREACHABLE
    click.echo(f"gunctl: safety stop: {reason}: {message}", err=True)
    return EXIT_SAFETY


def _line(event: Event) -> str:
    """One readable line per event, when there is no terminal for the live display."""
    data = event.model_dump(mode="json", exclude={"type", "at", "device"})
    step = data.pop("step", None)
    details = ", ".join(f"{k}={v}" for k, v in data.items() if v not in (None, {}, []))
    where = f" {step['muscle']} ({step['side']}, {step['head']} head)" if step else ""
    return f"[{event.at:7.1f}s] {event.type}{where}{': ' + details if details else ''}"


@contextlib.contextmanager
def _keys(loop: asyncio.AbstractEventLoop, on_key: object, *, enabled: bool) -> Iterator[None]:
    """Single keypresses from the terminal, without waiting for Enter; restored on exit."""
    if not enabled:
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def readable() -> None:
        for char in os.read(fd, 32).decode(errors="ignore"):
            action = KEY_ACTIONS.get(char.lower() if char.isalpha() else char)
            if action is not None:
                on_key(action)  # type: ignore[operator]

    loop.add_reader(fd, readable)
    try:
        yield
    finally:
        loop.remove_reader(fd)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)
