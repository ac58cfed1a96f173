"""The front door: :func:`simulate` and :func:`connect` give a :class:`Gun` to drive.

A ``Gun`` hides the Supervisor, its request queue and its event bus behind a
few methods, in the spirit of ``kasa.Device.connect`` and ``bleak.BleakClient``::

    async with gunctl.simulate("gunctl-open", time_scale=50) as gun:
        outcome = await gun.run("glute", side="left")

The Supervisor stays the only writer to the device: every method here hands
it a request from :mod:`gunctl.requests`, and every safety rule, cap and
limit still applies. ``state()`` returns the public :class:`~gunctl.state.GunState`;
``events()`` the session events as they happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING

import structlog

from gunctl.clock import Clock
from gunctl.control.events import (
    Event,
    HeadChangeRequired,
    SafetyStop,
    SessionAborted,
    SessionCompleted,
    Subscription,
)
from gunctl.devices import DEFAULT_SIM_SPEC, Device, connect_ble, connect_sim
from gunctl.errors import (
    GunctlError,
    LinkLostError,
    ProxyError,
    RequestRefusedError,
    SafetyStopError,
    UnknownNameError,
)
from gunctl.heads import Head
from gunctl.links.proxy_config import proxy_configs
from gunctl.logs import configure
from gunctl.profiles.loader import Catalogue, load_catalogue
from gunctl.profiles.plan import Plan, make_plan
from gunctl.requests import ActionName, Request, SessionAction, Side, Start
from gunctl.state import Ending, GunState, snapshot
from gunctl.store.diary import DiarySummary, Moment
from gunctl.store.history import History

if TYPE_CHECKING:
    from gunctl.links.proxy import Proxies
    from gunsim import Fault

Outcome = SessionCompleted | SessionAborted


class Gun:
    """A connected gun: ask it to do things, follow its events, read its state.

    Use it as an async context manager, or call :meth:`aclose`: closing stops
    the motor first, then lets go of the link.
    """

    def __init__(
        self,
        device: Device,
        catalogue: Catalogue,
        *,
        history: History | None = None,
        fits_heads: bool = False,
        proxies: Proxies | None = None,
    ) -> None:
        self._device = device
        self._proxies = proxies  # the ESPHome proxies the link goes through, closed after it
        self._catalogue = catalogue
        self._history = history
        self._fits_heads = fits_heads
        self._ending = Ending()
        self._subscriptions: set[Subscription] = set()
        self._recorders: set[asyncio.Task[object]] = set()
        self._before: int | None = None  # a diary score given for the next session
        self._last_session: int | None = None  # the history's id of this gun's latest session
        self._ends = self._subscribe()  # read at each state(): how the last session ended
        # The Supervisor's run ends when the link is lost (a Gun never reconnects) or
        # the gun is closed: every events() and run() then ends once it has read what
        # the Supervisor published, rather than waiting for events that cannot come.
        device.task.add_done_callback(lambda _: self._close_all())

    @property
    def device_id(self) -> str:
        """The gun's id: its BLE address, or the simulator's name."""
        return self._device.device_id

    @property
    def protocols(self) -> list[str]:
        """The protocols this gun can be asked to run, by name."""
        return sorted(self._catalogue.protocols)

    def state(self) -> GunState:
        """The gun's state now: its session, its motor and what it last reported."""
        for event in self._ends.pending():  # published synchronously: never behind
            self._ending.see(event)
        return snapshot(
            self.device_id,
            self._device.supervisor,
            connected=self._device.connected,
            ending=self._ending,
        )

    def events(self) -> AsyncIterator[Event]:
        """Every session event from now on, in order; ends when the gun is closed or lost."""
        return aiter(self._subscribe())

    # -- requests ------------------------------------------------------------------

    async def start(
        self, protocol: str, *, side: Side = "both", intensity_cap: float = 1.0
    ) -> Plan:
        """Start ``protocol``; returns the plan. Raises RequestRefusedError if refused.

        The session begins at a head change: the motor turns only once
        :meth:`confirm_head` says the head asked for is fitted.
        """
        plan = await self._plan(protocol, side, intensity_cap)
        recorder = self._subscribe() if self._history is not None else None
        try:
            await self._request(Start(plan))
        except BaseException:
            if recorder is not None:
                self._close(recorder)
            raise
        if recorder is not None:
            await self._record(plan, side, intensity_cap, recorder)
        return plan

    async def pause(self) -> None:
        """Stop the motor and hold the session where it is."""
        await self._act("pause")

    async def resume(self) -> None:
        """Go on after a pause."""
        await self._act("resume")

    async def skip(self) -> None:
        """End the step in progress and go to the next."""
        await self._act("skip")

    async def confirm_head(self) -> None:
        """Say the head asked for is fitted: the step may begin."""
        step = self.state().step
        if self._fits_heads and self._device.sim is not None and step is not None:
            self._device.sim.fit_head(Head(step.head))  # a simulated gun has no hands
        await self._act("confirm_head")

    async def stop(self) -> None:
        """Stop the motor now and end the session."""
        await self._act("stop")

    async def pain(self) -> None:
        """Sharp pain: stop now; that muscle side is done for today."""
        await self._act("pain_stop")

    # -- the symptom diary (docs/diary.md) -----------------------------------------------

    async def score(
        self, moment: Moment, pain: int | None = None, reach: str | None = None
    ) -> DiarySummary:
        """Record a pain score (0-10) and how far down the leg it reaches, for the diary.

        ``"before"`` is for the next session (give it before :meth:`start`:
        a score the diary's rules refuse, such as severe pain, refuses that
        start); ``"after"`` for this gun's latest session. Neither ``pain``
        nor ``reach`` records the question as skipped. ``reach`` is one of
        ``buttock``, ``thigh``, ``below_knee``, ``foot``. Returns the diary's
        summary, with the refusal, if any, now in force. Raises
        RequestRefusedError for an after-score with no session to give it to.
        """
        history = self._diary_history()
        session_id = None
        if moment == "after":
            session_id = self._last_session
            if session_id is None:
                raise RequestRefusedError(
                    "this gun has run no session to score after",
                    'score "before" the next one instead',
                    reason="invalid",
                )
        score = await asyncio.to_thread(
            history.record_score,
            moment,
            pain,
            reach,
            session_id=session_id,
            simulated=self._device.simulated,
        )
        if moment == "before":
            self._before = score
        return await self.diary()

    async def professional_seen(self, note: str = "") -> DiarySummary:
        """Record that a doctor or physiotherapist has seen the person: a new baseline.

        It lifts a refusal by the diary's rules. Returns the diary's summary.
        """
        history = self._diary_history()
        await asyncio.to_thread(
            history.record_professional, note, simulated=self._device.simulated, source="python"
        )
        return await self.diary()

    async def diary(self) -> DiarySummary:
        """The diary now: the latest scores, this week's massage, and any refusal."""
        history = self._diary_history()
        return await asyncio.to_thread(history.diary_summary, simulated=self._device.simulated)

    def _diary_history(self) -> History:
        if self._history is None:
            raise GunctlError(
                "this gun keeps no history, so no diary",
                "a gun from gunctl.connect keeps both; gunctl.simulate does when given history=",
                reason="no_history",
            )
        return self._history

    async def run(
        self, protocol: str, *, side: Side = "both", intensity_cap: float = 1.0
    ) -> Outcome:
        """Run ``protocol`` to its end and return how it ended.

        Returns the ``session_completed`` event, or ``session_aborted`` when it
        was stopped on request. Raises :class:`~gunctl.SafetyStopError` when a
        safety rule ended it and :class:`~gunctl.LinkLostError` when the link
        did. A simulated gun fits each head itself; on a real one, call
        :meth:`confirm_head` from elsewhere when each ``head_change_required``
        event arrives, once the head is on.
        """
        events = self._subscribe()
        try:
            await self.start(protocol, side=side, intensity_cap=intensity_cap)
            return await self._outcome(events)
        finally:
            self._close(events)

    async def _outcome(self, events: Subscription) -> Outcome:
        stop: SafetyStop | None = None
        async for event in events:
            if isinstance(event, HeadChangeRequired) and self._fits_heads:
                await self.confirm_head()
            elif isinstance(event, SafetyStop):
                stop = event
            elif isinstance(event, SessionCompleted):
                return event
            elif isinstance(event, SessionAborted):
                return _aborted(event, stop)
        task = self._device.task
        if task.done() and not task.cancelled() and (bug := task.exception()) is not None:
            raise bug  # the Supervisor failed: a bug in gunctl, not a link lost
        raise LinkLostError(
            "the gun's link ended, or the gun was closed, before the session did", _RECONNECT
        )

    async def _act(self, action: ActionName) -> None:
        await self._request(SessionAction(action))

    async def _request(self, request: Request) -> None:
        """Hand the Supervisor a request; one on a gone link is a LinkLostError, not a refusal."""
        try:
            await self._device.supervisor.request(request)
        except RequestRefusedError as exc:
            if exc.reason != "offline":
                raise
            raise LinkLostError(f"the gun is no longer connected: {exc.what}", _RECONNECT) from None

    async def _plan(self, protocol: str, side: Side, intensity_cap: float) -> Plan:
        chosen = self._catalogue.protocols.get(protocol)
        if chosen is None:
            raise UnknownNameError(
                f"no protocol named {protocol!r}", f"known: {', '.join(self.protocols)}"
            )
        exposure = self._device.supervisor.exposure
        return make_plan(
            chosen,
            self._catalogue.muscles,
            self._device.spec,
            side=side,
            user_cap=intensity_cap,
            blocked=await asyncio.to_thread(exposure.pain_blocks),
        )

    async def _record(
        self, plan: Plan, side: Side, intensity_cap: float, events: Subscription
    ) -> None:
        """Write the session to the history, so its time counts against the 48-hour caps."""
        history = self._history
        assert history is not None
        scale = self._device.supervisor.clock.scale
        before, self._before = self._before, None  # the diary's score given for this session
        session_id = await self._device.begin_session(
            history,
            plan,
            side=side,
            intensity_cap=intensity_cap,
            source="python",
            scale=scale,
            before_score=before,
        )
        self._last_session = session_id
        task = asyncio.create_task(self._device.record(history, events, session_id, scale=scale))
        self._recorders.add(task)
        task.add_done_callback(self._recorders.discard)

    # -- plumbing ------------------------------------------------------------------

    def _subscribe(self) -> Subscription:
        subscription = self._device.supervisor.bus.subscribe()
        if self._device.task.done():  # nothing more will come: it ends at once
            subscription.close()
        else:
            self._subscriptions.add(subscription)
        return subscription

    def _close(self, subscription: Subscription) -> None:
        subscription.close()
        self._subscriptions.discard(subscription)

    def _close_all(self) -> None:
        for subscription in list(self._subscriptions):
            self._close(subscription)

    async def aclose(self) -> None:
        """Stop the motor, end the session, let go of the link (and of the proxies it used)."""
        await self._device.aclose()
        if self._proxies is not None:
            await self._proxies.aclose()
            _PROXIED.discard(self)
        self._close_all()
        await asyncio.gather(*self._recorders, return_exceptions=True)
        if self._history is not None:
            await asyncio.to_thread(self._history.close)

    async def __aenter__(self) -> Gun:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()


_RECONNECT = (
    "a Gun does not reconnect: bring the gun nearer, or charge it, then close this one "
    "and connect again; nothing resumes by itself"
)


def _aborted(event: SessionAborted, stop: SafetyStop | None) -> SessionAborted:
    """A stop on request is an outcome; a stop by a safety rule or a lost link is an error."""
    if stop is None or stop.rule != event.reason:
        return event
    if stop.rule == "link_lost":
        raise LinkLostError(stop.message, _RECONNECT)
    raise SafetyStopError(stop.rule, stop.message, stop.values, "nothing resumes by itself")


def _default_logs() -> None:
    """Warnings to stderr, as the command line logs, unless the program set structlog up.

    structlog left alone prints every event, down to each frame written, to
    stdout: a program's own output would drown.
    """
    if not structlog.is_configured():
        configure()


@contextlib.asynccontextmanager
async def simulate(
    spec: str = DEFAULT_SIM_SPEC,
    *,
    time_scale: float = 1.0,
    seed: int = 0,
    faults: Sequence[tuple[float, Fault]] = (),
    history: History | None = None,
) -> AsyncIterator[Gun]:
    """A simulated gun of firmware ``spec``, in this process, for as long as the block runs.

    ``time_scale`` runs the session that many times faster than real time (a
    demo, or a test). ``faults`` are the simulator's faults (``gunsim.Overheat``,
    ``gunsim.DropLink``, ...), each at its seconds after switch-on: a test
    of your own code can meet a safety stop. The simulated person fits each
    head asked for. Nothing is recorded unless ``history`` is given; there the
    sessions are marked simulated and count only against other simulated
    ones, never against a person's caps. Closing the gun closes ``history``.
    """
    _default_logs()
    catalogue = await asyncio.to_thread(load_catalogue)
    device = await connect_sim(
        spec,
        clock=Clock(time_scale),
        device_id=f"sim-{spec}-{seed}",
        seed=seed,
        exposure=history.exposure(simulated=True) if history is not None else None,
    )
    assert device.sim is not None
    device.sim.faults.script(list(faults))
    async with Gun(device, catalogue, history=history, fits_heads=True) as gun:
        yield gun


async def connect(
    target: str,
    *,
    spec: str | None = None,
    timeout: float = 10.0,
    history: History | None = None,
    proxy: str | Sequence[str] | None = None,
) -> Gun:
    """Find the gun by BLE address or advertised name, connect, and return it.

    ``spec`` names the firmware spec when the advertisement does not tell.
    The sessions are checked against, and recorded in, ``history`` (the
    user's own by default), so the 48-hour caps and pain blocks hold as they
    do for ``gunctl run``. ``proxy`` is an ESPHome Bluetooth proxy, or a list
    of them, each ``"HOST"`` or ``"HOST,KEY"`` as ``gunctl run --proxy`` takes;
    without it, those of ``GUNCTL_PROXIES``, if set. With proxies the gun is
    reached through whichever of them, or the local adapter, hears it best.
    Raises ConfigError for a bad proxy, DeviceNotFoundError, OutOfSlotsError,
    ConnectAbortedError (all ConnectError) or NoSpecError.
    """
    _default_logs()
    configs = proxy_configs([proxy] if isinstance(proxy, str) else proxy or [], where="proxy")
    if configs and _PROXIED:  # before anything is opened that would then need closing
        raise ProxyError(
            "a gun reached through proxies is already open in this program",
            "close it first: habluetooth, which carries proxy links, serves one set of "
            "proxies per process (gunctl serve drives many guns through one)",
        )
    catalogue = await asyncio.to_thread(load_catalogue)
    history = history if history is not None else await asyncio.to_thread(History)
    proxies: Proxies | None = None
    try:
        if configs:
            from gunctl.links.proxy import Proxies  # bleak-esphome loads only when used

            proxies = Proxies(configs)
            await proxies.start()
        device = await connect_ble(
            target,
            clock=Clock(),
            spec_name=spec,
            timeout=timeout,
            exposure=history.exposure(simulated=False),
            proxies=proxies,
        )
    except BaseException:
        if proxies is not None:
            await proxies.aclose()
        await asyncio.to_thread(history.close)
        raise
    gun = Gun(device, catalogue, history=history, proxies=proxies)
    if proxies is not None:
        _PROXIED.add(gun)
    return gun


_PROXIED: weakref.WeakSet[Gun] = weakref.WeakSet()  # open guns from connect() that use proxies
