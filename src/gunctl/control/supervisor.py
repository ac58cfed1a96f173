"""The Supervisor: one per connected device, and the only code that writes to it.

It runs a fixed-rate loop against absolute deadlines, beaten by the clock's
metronome (one timer for every Supervisor of a process). Every tick it
evaluates the rules on time (staleness, hold, session and exposure time), asks
the session how hard the motor should run, limits how fast that may rise, and
writes only when needed: a new setpoint, a keepalive the firmware expects, or a
status poll. A tick that writes nothing runs within the metronome's call, with
no task woken; one that writes holds the next ticks until its writes are done,
as a write always held the loop. The rules that read telemetry run as each frame is decoded, not at
the next tick: the link hands each notification to the Supervisor as it arrives
(``Link.listen``), the frame is decoded and its rules run there and then, and
the writes they call for (a stop) go out through one task, in order, without
waiting for a tick. A hazard in a frame stops the motor before the frame after it.

Requests (start, pause, resume, skip, stop, pain, confirm head) come through
one queue. Stop and pain are handled the moment they arrive: the stop frame is
written at once, not at the next tick. After a safety stop or a lost link the
session ends aborted and the motor stays stopped until someone starts anew.

A write the device does not acknowledge within the driver's bound is a safety
stop (``write_unanswered``), and the link is then dropped: a link that hangs
cannot carry the next stop either, so the firmware's own watchdog takes over,
and the time rules wait at most that bound for a tick held by the write.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from gunctl.clock import Clock
from gunctl.control.driver import Driver, Unanswered
from gunctl.control.events import (
    ENDING_EVENTS,
    Event,
    EventBus,
    SafetyStop,
    SafetyWarning,
    SessionAborted,
    SessionStarted,
)
from gunctl.control.rules import Action, Limits, RuleSet, Telemetry, Tick, Verdict
from gunctl.control.session import Phase, Session
from gunctl.errors import RequestRefusedError
from gunctl.links.base import Endpoint, Link, LinkError, Notification
from gunctl.profiles.plan import Key, Plan, Want, wants
from gunctl.requests import STOPS, Request, SessionAction, Start
from gunctl.specs.codec import DecodeError
from gunctl.specs.messages import Version
from gunctl.specs.models import DeviceSpec, KeepaliveStrategy, TelemetryMode
from gunctl.specs.speed import Setpoint
from gunctl.store.diary import DiaryVerdict
from gunctl.weak import weak_method

log = structlog.get_logger("gunctl.supervisor")

BATTERY_POLL_S = 30.0


class Exposure(Protocol):
    """What the past and the sessions running now allow.

    ``reserve`` books a plan's time on each muscle side in the exposure ledger
    every session on the machine shares, or raises ``ExposureRefused``; it
    returns each side's exposure before this session (the last 48 hours, and
    what other running sessions have reserved). ``release`` gives the booking
    back once the session ends. ``pain_blocks`` names the muscle sides a pain
    stop has blocked for the rest of the day. ``diary_refusal`` is the symptom
    diary's rule that refuses any session until a professional has been
    seen (gunctl.store.diary), or None.
    """

    def exposure_s(self, muscle: str, side: str) -> float: ...

    def reserve(self, device: str, wants: Mapping[Key, Want]) -> dict[Key, float]: ...

    def release(self, device: str) -> None: ...

    def pain_blocks(self) -> Mapping[Key, str]:
        """(muscle, side) -> why it is blocked today, e.g. "sharp pain at 14:02"."""
        ...

    def diary_refusal(self) -> DiaryVerdict | None: ...


class NoExposure:
    """No history: nothing worked before, nothing blocked, nothing shared."""

    def exposure_s(self, muscle: str, side: str) -> float:
        return 0.0

    def reserve(self, device: str, wants: Mapping[Key, Want]) -> dict[Key, float]:
        return {key: self.exposure_s(*key) for key in wants}

    def release(self, device: str) -> None:
        return None

    def pain_blocks(self) -> Mapping[Key, str]:
        return {}

    def diary_refusal(self) -> DiaryVerdict | None:
        return None


# -- requests ------------------------------------------------------------------


@dataclass(frozen=True)
class _Begin:
    """A start with the plan's prior exposure already read, off the loop."""

    plan: Plan
    prior: dict[Key, float]
    overtaken: bool = False  # a stop arrived after the start, while it was being booked


def _prior_of(prior: Mapping[Key, float], muscle: str, side: str) -> float:
    """Exposure in the 48 hours before a session, from what was read at its start."""
    return prior.get((muscle, side), 0.0)


# -- state for observers -------------------------------------------------------


@dataclass
class LoopStats:
    ticks: int = 0
    overruns: int = 0
    max_late_s: float = 0.0
    last_at: float = field(default_factory=time.monotonic)  # real time of the last tick
    lateness: list[float] = field(default_factory=list)  # kept only when recording

    def as_dict(self) -> dict[str, Any]:
        """What diagnostics publish: ticks run, ticks missed, the worst lateness seen."""
        return {
            "ticks": self.ticks,
            "overruns": self.overruns,
            "max_late_ms": round(self.max_late_s * 1000, 2),
        }

    def record(self, late: float, keep: bool) -> None:
        self.ticks += 1
        self.last_at = time.monotonic()
        self.max_late_s = max(self.max_late_s, late)
        if keep:
            self.lateness.append(late)


@dataclass
class LinkStats:
    frames: int = 0
    decode_errors: int = 0
    out_of_order: int = 0
    coalesced: int = 0  # frames the link gave up because this reader fell behind

    def as_dict(self) -> dict[str, int]:
        return {
            "frames": self.frames,
            "decode_errors": self.decode_errors,
            "out_of_order": self.out_of_order,
            "coalesced": self.coalesced,
        }


class Supervisor:
    def __init__(
        self,
        spec: DeviceSpec,
        link: Link,
        *,
        clock: Clock,
        device_id: str | None = None,
        limits: Limits | None = None,
        rate_hz: float = 50.0,
        rules: RuleSet | None = None,
        exposure: Exposure | None = None,
        bus: EventBus | None = None,
        record_lateness: bool = False,
    ) -> None:
        if rate_hz <= 0:
            raise ValueError("the control rate must be positive")
        self.spec = spec
        self.link = link
        self.clock = clock
        self.device_id = device_id or link.address
        self.limits = limits or Limits()
        stale = clock.real_floor(self.limits.stale_after_s)
        self.limits = self.limits.model_copy(update={"stale_after_s": stale})
        # A simulated gun (in this loop, or faster than real time, which only a simulated
        # gun may run at) is paused with the host or has its frames held up by it: that
        # silence is not the gun's. A real gun's silence always counts.
        self._discounts_pauses = link.in_process or clock.scale > 1
        self.period = 1.0 / rate_hz
        self.rules = rules or RuleSet()
        self.exposure: Exposure = exposure or NoExposure()
        self.bus = bus or EventBus()
        self.driver = Driver(spec, link)
        # the spec's write schedule, read once rather than on every tick (None: never)
        caps = spec.capabilities
        self._fixed_keepalive = caps.keepalive.strategy is KeepaliveStrategy.FIXED
        self._keepalive_s = caps.keepalive.period_s
        polled = caps.telemetry.mode is TelemetryMode.POLL
        self._poll_s = caps.telemetry.period_s if polled else None
        self.telemetry = Telemetry(self._trusted(spec))
        self._view = Tick(
            now=0.0,
            spec=spec,
            limits=self.limits,
            telemetry=self.telemetry,
            watching_since=0.0,
            step=None,
            holding_s=None,
            motor_on=False,
            setpoint_ppm=0,
            setpoint_since=0.0,
            worked_s={},
            prior_s=functools.partial(_prior_of, {}),
            active_s=0.0,
            session_running=False,
            stop_written_at=None,
            speed_at_stop=None,
        )
        self.loop_stats = LoopStats()
        self.link_stats = LinkStats()
        self.firmware: str | None = None
        self.session: Session | None = None
        self.last_safety_stop: SafetyStop | None = None
        self._record_lateness = record_lateness
        self._starting = asyncio.Lock()
        self._stops = 0  # stop and pain requests taken, to tell a start that one overtook it
        self._releases: set[asyncio.Task[None]] = set()
        self._requests: asyncio.Queue[tuple[_Begin | SessionAction, asyncio.Future[None]]] = (
            asyncio.Queue()
        )
        # the writes the frames' rules asked for, in the frames' order
        self._actions: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._restop_queued = False  # a stop to write again is queued, once however many frames
        self._failed: asyncio.Future[None] | None = None  # a frame's or a tick's handling failed
        self._writing: asyncio.Task[None] | None = None  # the writes of the last tick, while out
        self._held: float | None = None  # the first deadline missed while they were out
        self._intensity = 0.0  # the intensity in force, after the slew limit
        self._back_off = 1.0
        self._reported: set[str] = set()  # rules whose stop was announced since the session began
        self._setpoint_since = 0.0
        self._stop_written_at: float | None = None
        self._speed_at_stop: float | None = None
        self._last_write = -math.inf
        self._last_keepalive = -math.inf
        self._last_poll = -math.inf
        self._watching_since = 0.0
        self._last_tick = 0.0
        self._last_seq: int | None = None
        # a simulated gun's host pauses: (when seen, clock seconds paused in all before it)
        self._paused_s = 0.0
        self._pauses: deque[tuple[float, float]] = deque(maxlen=16)
        self._closed = asyncio.Event()
        self.ended: str | None = None  # why run() returned

    @staticmethod
    def _trusted(spec: DeviceSpec) -> set[str]:
        trusted = set(spec.documented_fields)
        if spec.gatt.battery is not None:
            trusted.add("battery_pct")
        return trusted

    # -- public API ------------------------------------------------------------

    @property
    def running(self) -> bool:
        return self.session is not None and not self.session.done

    async def request(self, request: Request) -> None:
        """Hand a request to the Supervisor; raises RequestRefusedError if it is refused."""
        if self._closed.is_set():
            raise RequestRefusedError("the device is no longer connected", reason="offline")
        if isinstance(request, SessionAction):
            if request.action in STOPS:
                self._stops += 1  # counted as it arrives: a start still being booked loses
            await self._queue(request)
            return
        async with self._starting:  # one start at a time books the ledger for this device
            stops = self._stops
            begin = await self._begin(request)
            # a stop that came while the start was being booked ends it as it begins
            await self._queue(dataclasses.replace(begin, overtaken=self._stops != stops))

    async def _queue(self, item: _Begin | SessionAction) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._requests.put_nowait((item, future))
        await future

    async def _begin(self, start: Start) -> _Begin:
        """Check the start and book the plan's time in the ledger, before it is queued.

        The history is read in a worker thread, so the disk never holds up a
        stop queued behind a start. A session faster than real time (a demo)
        books nothing: its minutes are not a person's.
        """
        plan = start.plan
        if self.running:
            raise RequestRefusedError("a session is already running on this device", reason="busy")
        if plan.spec != self.spec.name:
            raise RequestRefusedError(f"the plan is for {plan.spec}, not {self.spec.name}")
        plan_wants = wants(plan)

        def read() -> dict[Key, float]:
            if (verdict := self.exposure.diary_refusal()) is not None:
                raise RequestRefusedError(str(verdict), reason=verdict.rule)
            blocked = self.exposure.pain_blocks()
            for step in plan.steps:
                if (reason := blocked.get((step.muscle, step.side))) is not None:
                    raise RequestRefusedError(
                        f"{step.muscle} {step.side} is blocked until tomorrow ({reason}); "
                        "make the plan with make_plan(blocked=...) to skip it",
                        reason="blocked_today",
                    )
            if self.clock.scale != 1:
                return {key: self.exposure.exposure_s(*key) for key in plan_wants}
            return self.exposure.reserve(self.device_id, plan_wants)

        return _Begin(plan, await asyncio.to_thread(read))  # ExposureRefused is a refusal

    async def run(self) -> str:
        """Supervise the connected link until it is lost or ``close()`` is called."""
        now = self.clock.now()
        self._watching_since = self._last_tick = now
        failed = self._failed = asyncio.get_running_loop().create_future()
        forget = self.link.listen(self._receive)
        tasks: list[asyncio.Future[None]] = [
            failed,  # set by a frame whose handling failed
            asyncio.create_task(self._serve_actions(), name="actions"),
            asyncio.create_task(self._serve_requests(), name="requests"),
            asyncio.create_task(self._keep_time(), name="tick"),
        ]
        if self.spec.gatt.battery is not None:
            tasks.append(asyncio.create_task(self._poll_battery(), name="battery"))
        lost = asyncio.create_task(self.link.wait_disconnected())
        closed = asyncio.create_task(self._closed.wait())
        watched: list[asyncio.Future[Any]] = [lost, closed, *tasks]
        try:
            done, _ = await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if lost in done or not self.link.connected:
                # a loss first: a task that failed on the dead link is only its echo
                await self._link_lost(lost.result() if lost.done() else "lost")
            else:
                for task in done:
                    if task not in (lost, closed) and (error := task.exception()) is not None:
                        raise error
        finally:
            forget()
            self._closed.set()
            for task in watched:
                task.cancel()
            await asyncio.gather(*watched, return_exceptions=True)
            self._refuse_pending()
        return self.ended or "closed"

    async def close(self) -> None:
        """Stop the motor, end any session, and make ``run()`` return."""
        if self._closed.is_set():
            return
        try:
            await self._stop_now()
        except LinkError as exc:  # shut down all the same; the firmware watchdog is the backstop
            log.error("stop_failed_on_close", device=self.device_id, error=str(exc))
        if self.running:
            self._abort("stopped", "the controller is shutting down")
        self.ended = "closed"
        self._closed.set()

    # -- requests --------------------------------------------------------------

    async def _serve_requests(self) -> None:
        while True:
            request, future = await self._requests.get()
            try:
                await self._handle(request)
            except RequestRefusedError as exc:
                if not future.done():
                    future.set_exception(exc)
            except LinkError as exc:
                if not future.done():
                    future.set_exception(
                        RequestRefusedError(
                            f"the device did not take it: {exc}", reason="not_taken"
                        )
                    )
                await self._write_failed(exc)
            else:
                if not future.done():
                    future.set_result(None)

    async def _handle(self, request: _Begin | SessionAction) -> None:
        if isinstance(request, _Begin):
            self._start(request.plan, request.prior)
            if request.overtaken:  # its stop frame is out already; the session ends unrun
                self._abort("stopped", "stopped on request")
                return
            await self._check_telemetry()
            return
        if request.action in STOPS:
            # the frame goes out first: no tick, no bookkeeping ahead of it
            await self._stop_now()
            log.info("stop_requested", device=self.device_id, kind=request.action)
            if self.session is None or self.session.done:
                return
            self.session.note_time(self.clock.now())
            if request.action == "pain_stop":
                self.session.pain()
            else:
                self._abort(request.reason, request.message)
            return
        session = self.session
        if session is None or session.done:
            raise RequestRefusedError("no session is running", reason="no_session")
        session.note_time(self.clock.now())
        if request.action == "pause":
            session.pause()
            await self._stop_now()
        elif request.action == "resume":
            session.resume()
        elif request.action == "skip":
            await self._stop_now()
            session.skip()
        else:
            session.confirm_head()

    def _start(self, plan: Plan, prior: dict[Key, float]) -> None:
        now = self.clock.now()
        self.session = Session(plan, self.device_id, weak_method(self._publish))
        self.rules = self.rules.fresh()
        # a function of what was read, not a method of self: the view holds no cycle
        self._view.prior_s = functools.partial(_prior_of, prior)
        self._watching_since = now
        self._reported.clear()
        self._publish(
            SessionStarted(
                at=now,
                device=self.device_id,
                protocol=plan.protocol,
                steps=len(plan.steps),
                planned_s=plan.planned_s,
            )
        )
        self.session.start(now)

    # -- the loop --------------------------------------------------------------

    async def _keep_time(self) -> None:
        """Tick on the clock's metronome for as long as ``run()`` lasts."""
        # asked here, not in run(): the frame listener is registered by now
        with contextlib.suppress(LinkError):
            await self.driver.request_version()
        metronome = self.clock.metronome(self.period)
        metronome.join(self)
        try:
            await asyncio.get_running_loop().create_future()  # until run() cancels it
        finally:
            metronome.leave(self)
            if self._writing is not None:
                self._writing.cancel()

    def beat(self, deadline: float) -> None:
        """One tick, called by the metronome at ``deadline``; missed while the last one writes."""
        if self._writing is not None:  # its writes hold the loop, as they always did
            if self._held is None:
                self._held = deadline
            return
        try:
            work = self._tick(self._account(deadline))
            if work is not None:
                self._writing = asyncio.get_running_loop().create_task(
                    self._finish_tick(work), name="tick writes"
                )
        except Exception as exc:  # a fault in gunctl: run() raises it
            self._fail(exc)

    def _account(self, deadline: float) -> float:
        """Count the tick in the loop statistics; the clock time it runs at."""
        now = self.clock.now()
        late = now - deadline
        self.loop_stats.record(late, self._record_lateness)
        paused = self.clock.host_pause(late) if self._discounts_pauses else 0.0
        if paused:
            self._pauses.append((now, self._paused_s))
            self._paused_s += paused
        if late > self.period:
            self.loop_stats.overruns += 1
        return now

    async def _finish_tick(self, work: Callable[[], Awaitable[None]]) -> None:
        try:
            await work()
        except LinkError as exc:
            if self.link.connected:  # a lost link is the link watcher's to report
                await self._write_failed(exc)
        except Exception as exc:
            self._fail(exc)
        self._writing = None
        held, self._held = self._held, None
        if held is not None:  # the tick that waited runs now, late
            self.beat(held)

    def _fail(self, exc: Exception) -> None:
        if self._failed is not None and not self._failed.done():
            self._failed.set_exception(exc)

    def _tick(self, now: float) -> Callable[[], Awaitable[None]] | None:
        """Decide the tick: None when it writes nothing, or the writes to await."""
        dt, self._last_tick = now - self._last_tick, now
        session = self.session
        motor_on = not self.driver.setpoint.stopped
        target = session.advance(now, dt, motor_on) if session is not None else 0.0
        verdicts = self.rules.check(self._observe(now, motor_on), on_frame=False)
        if verdicts:
            return functools.partial(self._act_then_drive, verdicts, now, target, dt)
        return self._drive(now, target, dt)

    async def _act_then_drive(
        self, verdicts: list[Verdict], now: float, target: float, dt: float
    ) -> None:
        for verdict in verdicts:
            await self._act(verdict)
        work = self._drive(now, target, dt)
        if work is not None:
            await work()

    async def _check_telemetry(self) -> None:
        """Run the telemetry rules on what is known now, and act at once.

        Called when a session starts, so that a fault the device already
        reports refuses the start before a tick can turn the motor on, and
        after a battery reading. A frame runs them as it is taken in.
        """
        await self._act_all(self._telemetry_verdicts(self.clock.now()))

    def _telemetry_verdicts(self, now: float) -> list[Verdict]:
        """The telemetry rules' verdicts; a back-off is applied by the next tick."""
        verdicts = self.rules.check(
            self._observe(now, not self.driver.setpoint.stopped), on_frame=True
        )
        if not verdicts:  # the usual frame: nothing to say, no back-off asked for
            self._back_off = 1.0
            return verdicts
        backing = [v for v in verdicts if v.action is Action.BACK_OFF]
        if backing and self._back_off == 1.0:  # announce a back-off once, when it begins
            self._warn(backing[0])
        # a back-off lasts as long as the rule keeps asking for it; the next tick applies it
        self._back_off = self.limits.force_back_off if backing else 1.0
        return verdicts

    async def _act_all(self, verdicts: list[Verdict]) -> None:
        try:
            for verdict in verdicts:
                await self._act(verdict)
        except LinkError as exc:
            await self._write_failed(exc)

    async def _write_failed(self, exc: LinkError) -> None:
        if not self.link.connected:  # a lost link is the link watcher's to report
            return
        if isinstance(exc, Unanswered):
            verdict = Verdict("write_unanswered", Action.STOP, str(exc), {"error": str(exc)})
            await self._drop(verdict, "dropped: writes unanswered")
            return
        verdict = Verdict("link_error", Action.STOP, f"a write failed: {exc}", {"error": str(exc)})
        await self._safety_stop(verdict)

    async def _drop(self, verdict: Verdict, ended: str) -> None:
        """Stop, then drop the link: the firmware's own watchdog is the last word."""
        await self._safety_stop(verdict)
        log.error("dropping_link", device=self.device_id, **verdict.values)
        self.ended = ended
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self.driver.ack_within_s):
                await self.link.disconnect()

    def _observe(self, now: float, motor_on: bool) -> Tick:
        """The rules' view, brought up to date in place.

        One view per Supervisor rather than a ``Tick`` built per check: the
        rules run on every tick and every frame of every gun, and no rule keeps
        the view past its check. The spec, the limits, the telemetry and the
        prior exposure are the Supervisor's own for its whole life, set once.
        """
        view = self._view
        session = self.session
        active = session is not None and not session.done
        view.now = now
        view.watching_since = self._watching_since
        view.motor_on = motor_on
        view.setpoint_ppm = self.driver.setpoint.ppm
        view.setpoint_since = self._setpoint_since
        view.session_running = active
        view.stop_written_at = self._stop_written_at
        view.speed_at_stop = self._speed_at_stop
        view.host_paused_s = (
            self._paused_since(max(self.telemetry.last_at or 0.0, self._watching_since))
            if self._pauses
            else 0.0
        )
        if session is None:
            view.step = view.holding_s = None
            view.worked_s, view.active_s = {}, 0.0
            return view
        view.step = session.step if active else None
        view.holding_s = session.holding_s if active else None
        view.worked_s = session.worked
        view.active_s = session.active_s
        return view

    def _paused_since(self, since: float) -> float:
        """Clock seconds the host was paused after ``since`` (a frame's arrival).

        Only the pauses still kept count: when more came since than are kept,
        the oldest are left out, so a silent gun is never discounted more than
        it was paused.
        """
        for seen, before in self._pauses:
            if seen > since:
                return self._paused_s - before
        return 0.0

    async def _act(self, verdict: Verdict) -> None:
        if verdict.action is Action.WARN:
            self._warn(verdict)
        elif verdict.action is Action.STOP:
            await self._safety_stop(verdict)
        elif verdict.action is Action.STOP_AGAIN:
            log.error("stop_not_taken", device=self.device_id, **verdict.values)
            await self.driver.stop()
        elif verdict.action is Action.DROP_LINK:
            await self._drop(verdict, "dropped: motor ignores stop")

    def _warn(self, verdict: Verdict) -> None:
        self._publish(
            SafetyWarning(
                at=self.clock.now(),
                device=self.device_id,
                rule=verdict.rule,
                message=verdict.message,
                values=verdict.values,
            )
        )

    def _drive(self, now: float, target: float, dt: float) -> Callable[[], Awaitable[None]] | None:
        """The writes this tick needs (None for none): a new setpoint, a keepalive, a poll."""
        session = self.session
        if session is None or session.done or session.paused is not None:
            target = 0.0
        target *= self._back_off
        if target > self._intensity:  # rising is slew-limited; easing off never is
            target = min(target, self._intensity + self.limits.slew_per_s * dt)
        self._intensity = target
        step = session.step if session is not None else None
        cap = step.cap if step is not None else 0.0
        wanted = self.driver.clamp(target, cap)
        changed = wanted != self.driver.setpoint
        # A fixed keepalive proves the host loop is alive, so it goes out on its own
        # schedule; for repeat-last, any frame the firmware receives is one.
        fed = (
            self._last_keepalive if self._fixed_keepalive else now if changed else self._last_write
        )
        keep = self._keepalive_s is not None and now - fed >= self._keepalive_s
        poll = self._poll_s is not None and now - self._last_poll >= self._poll_s
        if not (changed or keep or poll):
            return None
        # a stop written between this decision and the write drops the setpoint
        after = self.driver.stops
        return functools.partial(
            self._write_tick, now, wanted if changed else None, target, cap, after, keep, poll
        )

    async def _write_tick(
        self,
        now: float,
        wanted: Setpoint | None,
        target: float,
        cap: float,
        after: int,
        keep: bool,
        poll: bool,
    ) -> None:
        if wanted is not None:
            if wanted.stopped:
                await self._stop_now()
            else:
                if self.driver.setpoint.stopped:
                    self._setpoint_since = now
                if not (await self.driver.run_at(target, cap, after=after)).stopped:
                    self._stop_written_at = None
            self._last_write = now
        if keep:
            await self.driver.keepalive()
            self._last_write = self._last_keepalive = now
        if poll:
            self._last_poll = now
            await self.driver.request_status()

    # -- stopping --------------------------------------------------------------

    async def _stop_now(self) -> None:
        """Write stop at once; remember when, to watch that the motor obeys."""
        was_on = not self.driver.setpoint.stopped
        self._intensity = 0.0
        await self.driver.stop()
        self._last_write = self.clock.now()
        if was_on:
            self._stop_written_at = self._last_write
            self._speed_at_stop = self.telemetry.get("speed_ppm")

    async def _safety_stop(self, verdict: Verdict) -> None:
        if verdict.rule in self._reported and not self.running and self.driver.setpoint.stopped:
            return  # a condition that persists after its stop: already stopped and said so
        self._reported.add(verdict.rule)
        with contextlib.suppress(LinkError):
            await self._stop_now()
        session = self.session
        now = self.clock.now()
        event = SafetyStop(
            at=now,
            device=self.device_id,
            rule=verdict.rule,
            message=verdict.message,
            values=verdict.values,
            step_index=session.step.index if session is not None and session.step else None,
        )
        self.last_safety_stop = event
        log.error("safety_stop", device=self.device_id, rule=verdict.rule, **verdict.values)
        self._publish(event)
        if self.running:
            self._abort(verdict.rule, verdict.message)

    def _abort(self, reason: str, message: str) -> None:
        session = self.session
        assert session is not None
        session.phase = Phase.DONE
        self._publish(
            SessionAborted(
                at=self.clock.now(),
                device=self.device_id,
                reason=reason,
                message=message,
                worked_s=round(sum(session.worked.values()), 3),
            )
        )

    async def _link_lost(self, reason: str) -> None:
        if reason == "requested" and self.ended is not None:
            return
        self.ended = self.ended or f"link {reason}"
        log.error("link_lost", device=self.device_id, reason=reason)
        # the stop frame cannot go out now; the firmware watchdog is what stops the motor
        await self._safety_stop(
            Verdict("link_lost", Action.STOP, f"the link was {reason}", {"reason": reason})
        )

    def _refuse_pending(self) -> None:
        while not self._requests.empty():
            _, future = self._requests.get_nowait()
            if not future.done():
                future.set_exception(
                    RequestRefusedError("the device is no longer connected", reason="offline")
                )

    # -- telemetry -------------------------------------------------------------

    def _receive(self, note: Notification | None) -> None:
        """Each notification as the link hands it over: a frame is decoded and checked here.

        Called inside the link's own callback, so nothing here waits: the
        writes a frame's rules call for are queued for ``_serve_actions``. The
        end of the link (``None``) is the link watcher's to report.
        """
        if note is None or note.endpoint is not Endpoint.TELEMETRY:
            return
        try:
            self._take_frame(note)
        except Exception as exc:  # a fault in gunctl, not in the frame: run() raises it
            self._fail(exc)

    def _take_frame(self, note: Notification) -> None:
        try:
            report = self.driver.codec.decode_telemetry(note.data)
        except DecodeError as exc:
            self.link_stats.decode_errors += 1
            log.warning(
                "frame_rejected",
                device=self.device_id,
                reason=exc.reason.value,
                frame=note.data.hex(),
            )
            return
        if isinstance(report, Version):
            self.firmware = str(report)
            return
        if self._out_of_order(report.get("seq")):
            self.link_stats.out_of_order += 1
            return
        self.link_stats.frames += 1
        self.link_stats.coalesced = self.link.coalesced
        self.telemetry.update(report, note.received_at)
        self._act_later(self._telemetry_verdicts(note.received_at))
        if self.driver.stop_unconfirmed:
            self._confirm_stop(report.get("running"))

    def _act_later(self, verdicts: list[Verdict]) -> None:
        """Queue the writes a frame's verdicts call for; a frame with none queues nothing."""
        if verdicts and any(v.action is not Action.BACK_OFF for v in verdicts):
            self._actions.put_nowait(functools.partial(self._act_all, verdicts))

    async def _serve_actions(self) -> None:
        while True:
            action = await self._actions.get()
            await action()

    def _confirm_stop(self, running: bool | None) -> None:
        """A stop written without response goes again with each frame still reporting it running."""
        if running is False:
            self.driver.stop_unconfirmed = False
        elif running and self.driver.setpoint.stopped and not self._restop_queued:
            self._restop_queued = True
            self._actions.put_nowait(self._stop_again)

    async def _stop_again(self) -> None:
        self._restop_queued = False
        try:
            await self.driver.stop()
        except LinkError as exc:
            await self._write_failed(exc)

    def _out_of_order(self, seq: int | None) -> bool:
        """A frame older than one already seen (delayed or reordered) is dropped."""
        if seq is None or "seq" not in self.telemetry.trusted:
            return False
        if self._last_seq is not None and not 0 < (seq - self._last_seq) % 65536 < 32768:
            return True
        self._last_seq = seq
        return False

    async def _poll_battery(self) -> None:
        while True:
            with contextlib.suppress(LinkError):  # a lost link is the run's to handle
                try:
                    level = await self.driver.read_battery()
                except DecodeError as exc:  # a bad reading is a bad frame: counted, not used
                    self.link_stats.decode_errors += 1
                    log.warning("battery_read_rejected", device=self.device_id, reason=str(exc))
                else:
                    self.telemetry.update({"battery_pct": level}, self.clock.now(), frame=False)
                    await self._check_telemetry()
            await self.clock.sleep(BATTERY_POLL_S)

    def _publish(self, event: Event) -> None:
        log.info(event.type, **event.model_dump(mode="json", exclude={"type"}))
        self.bus.publish(event)
        if isinstance(event, ENDING_EVENTS) and self.clock.scale == 1:
            # the booking goes back; the session's recorded time counts in its place
            task = asyncio.get_running_loop().create_task(
                asyncio.to_thread(self.exposure.release, self.device_id)
            )
            self._releases.add(task)
            task.add_done_callback(self._releases.discard)
