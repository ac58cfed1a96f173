"""The daemon behind ``gunctl serve``: the configured guns, kept connected, and one command path.

Each configured gun has a :class:`DeviceSlot`. A slot's task connects the gun
(a simulated one in-process, or a real one over BLE), lets its Supervisor run
until the link is lost, and connects again after a back-off that doubles up to
a cap, with jitter so that several daemons do not retry in step. A gun that
comes back is stopped and idle: nothing resumes on its own.

:meth:`Daemon.submit` is the only way a command reaches a gun, whatever sent
it (the MQTT ``set`` and ``stop`` topics, Home Assistant's buttons, select and
number, ``stop_all``). Each gun's commands go through its :class:`~gunctl.lane.Lane`,
which runs them in arrival order except that a stop wins (see that module), and
then through :meth:`Daemon.execute`. It
hands requests to the Supervisor, which stays the only writer to the device:
nothing here can raise a setpoint. A start is planned with ``make_plan`` under
the lowest of the command's intensity cap and the configured one, so no MQTT
command can ask for more than the profile and the person allow.

The daemon knows nothing of MQTT: a front end (the MQTT bridge) calls
:meth:`Daemon.subscribe` with a :class:`Subscriber`, and is told of session
events and of links coming and going.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol

import structlog

from gunctl.clock import Clock
from gunctl.config import ServeSettings, ble_device_id, sim_device_id
from gunctl.control.events import (
    Event,
    Subscription,
)
from gunctl.datafile import suggest
from gunctl.devices import Device
from gunctl.errors import RequestRefusedError
from gunctl.lane import Lane, Result
from gunctl.profiles.loader import Catalogue, load_catalogue
from gunctl.profiles.plan import PlanError, make_plan
from gunctl.redflags import SUMMARY
from gunctl.requests import (
    CommandError,
    ConfirmCommand,
    DeviceCommand,
    ScoreCommand,
    SeenCommand,
    SelectCommand,
    SessionAction,
    SessionCommand,
    Start,
    StartCommand,
)
from gunctl.specs.loader import get_spec
from gunctl.specs.models import DeviceSpec
from gunctl.state import Ending, GunState, snapshot
from gunctl.store import selections
from gunctl.store.diary import DiarySummary
from gunctl.store.history import History, HistoryError
from gunctl.store.selections import Selection

if TYPE_CHECKING:
    from gunctl.links.proxy import Proxies

log = structlog.get_logger("gunctl.daemon")

BLE_ADDRESS = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")

FOLLOWER_WAIT_S = 2.0  # the longest a start waits for the last session's end to be written
DIARY_REFRESH_S = 600.0  # the diary's summary is read again this often: "this week" moves on


# -- reconnecting ----------------------------------------------------------------


@dataclass(frozen=True)
class Backoff:
    """Delays between attempts: doubling from ``first_s`` up to ``cap_s``, each jittered.

    The jitter draws uniformly from the upper half of the delay, so a delay never
    collapses to zero and retries from several daemons drift apart.
    """

    first_s: float = 1.0
    cap_s: float = 60.0
    factor: float = 2.0

    def delay(self, attempt: int, rng: random.Random | None = None) -> float:
        """The pause before attempt ``attempt`` (1 = the first retry)."""
        base = min(self.cap_s, self.first_s * self.factor ** max(0, attempt - 1))
        return (rng or random).uniform(base / 2, base)


NAME_ATTEMPTS = 5  # a BLE name (not an address) nobody advertises is looked for this often


def _hopeless(slot: DeviceSlot, exc: Exception, failures: int) -> bool:
    """Whether connecting again cannot help.

    A gun found that no firmware spec matches stays unmatched; a target that is
    not a BLE address and that no gun advertised in :data:`NAME_ATTEMPTS` tries
    is most likely a typing mistake. A gun by address is looked for forever, at
    the back-off's cap: it may be switched off for the night.
    """
    from gunctl.errors import DeviceNotFoundError, NoSpecError

    if slot.kind != "ble":
        return False
    if isinstance(exc, NoSpecError):
        return True
    return (
        isinstance(exc, DeviceNotFoundError)
        and not BLE_ADDRESS.match(slot.target)
        and failures >= NAME_ATTEMPTS
    )


# -- what the bridge is told -------------------------------------------------------


class Subscriber(Protocol):
    """A front end told what happens to the daemon's guns; called on the event loop."""

    def on_event(self, slot: DeviceSlot, event: Event) -> None:
        """A gun's session event, in the order its Supervisor published it."""
        ...

    def on_link(self, slot: DeviceSlot, online: bool) -> None:
        """A gun connected (``online``) or lost, or given up."""
        ...


Connector = Callable[["DeviceSlot"], Awaitable[Device]]


@dataclass(eq=False)
class DeviceSlot:
    """One configured gun: connected or not, with what MQTT needs to know about it."""

    device_id: str
    kind: Literal["sim", "ble"]
    target: str  # the BLE address or name; the simulated device's seed for a simulator
    spec: DeviceSpec | None  # known up front for a simulator, after connecting for BLE
    device: Device | None = None
    selected: Selection = field(default_factory=Selection)
    ending: Ending = field(default_factory=Ending)  # how the last session ended
    red_flags_confirmed_at: float | None = None  # Daemon.person_clock at the "none apply"
    connects: int = 0
    problem: str | None = None  # why the daemon stopped trying to connect it
    lane: Lane = field(init=False)  # set by the Daemon, which runs its commands
    follower: asyncio.Task[Any] | None = None
    task: asyncio.Task[None] | None = None
    last_session: int | None = None  # the history's id of this gun's latest session

    @property
    def connected(self) -> bool:
        return self.device is not None and self.device.connected

    @property
    def rssi(self) -> int | None:
        """The advertised signal strength of a Bluetooth LE gun while connected."""
        return self.device.rssi if self.device is not None else None

    def loop_and_link(self) -> dict[str, Any]:
        """A connected gun's control loop and telemetry link, counted since it connected."""
        device = self.device
        if device is None or not self.connected:
            return {}
        supervisor = device.supervisor
        return {**supervisor.loop_stats.as_dict(), **supervisor.link_stats.as_dict()}

    def state(self) -> GunState:
        """The gun's public state; what it showed last, once its link is gone."""
        return snapshot(
            self.device_id,
            self.device.supervisor if self.device is not None else None,
            spec=self.spec,
            connected=self.connected,
            ending=self.ending,
        )


class Daemon:
    def __init__(
        self,
        settings: ServeSettings,
        *,
        clock: Clock | None = None,
        history: History | None = None,
        catalogue: Catalogue | None = None,
        connector: Connector | None = None,
        backoff: Backoff | None = None,
    ) -> None:
        self.settings = settings
        self.clock = clock or Clock(settings.time_scale)
        # the diary rules' thresholds are the configuration's: a history passed in brings its own
        self.history = history if history is not None else History(diary=settings.diary)
        if catalogue is None:
            catalogue = load_catalogue(partial=True)
            for problem in catalogue.problems:  # reported; everything else still works
                log.warning("profile_left_out", problem=str(problem))
        self.catalogue = catalogue
        self.backoff = backoff or Backoff()
        # A person's confirmation lasts minutes of their time, whatever a simulator's scale
        self.person_clock: Callable[[], float] = time.monotonic
        self._connector = connector or self._connect
        self._subscribers: list[Subscriber] = []
        # the diary's summary, real and simulated, and who wants to know when it changes
        self.diary: dict[str, DiarySummary] = {}
        self._diary_watchers: list[Callable[[], None]] = []
        self._diary_wanted = asyncio.Event()
        self._diary_task: asyncio.Task[None] | None = None
        self.slots: dict[str, DeviceSlot] = {}
        self._closing = False
        self._link_changed = asyncio.Event()
        self.proxies: Proxies | None = None
        self._proxies_lock = asyncio.Lock()
        self._selections = self.history.path.parent / selections.FILE_NAME
        self._selections_lock = asyncio.Lock()
        saved = selections.load(self._selections)
        for n in range(1, settings.devices.sim + 1):
            device_id = sim_device_id(settings.node_id, n)
            self.slots[device_id] = DeviceSlot(
                device_id,
                "sim",
                str(n),
                get_spec(settings.devices.sim_spec),
                selected=self._restored(device_id, saved),
            )
        for address in settings.devices.ble:
            device_id = ble_device_id(address)
            self.slots[device_id] = DeviceSlot(
                device_id, "ble", address, None, selected=self._restored(device_id, saved)
            )
        for device_id, slot in self.slots.items():
            slot.lane = Lane(functools.partial(self.execute, device_id), device_id)

    def _restored(self, device_id: str, saved: dict[str, Selection]) -> Selection:
        """The choice saved for ``device_id``, less a protocol that no longer exists."""
        selection = saved.get(device_id)
        if selection is None:
            return Selection(intensity_cap=self.settings.intensity_cap)
        if selection.protocol is not None and selection.protocol not in self.catalogue.protocols:
            log.warning("selection_dropped", device=device_id, protocol=selection.protocol)
            return selection.model_copy(update={"protocol": None})
        return selection

    @property
    def protocols(self) -> list[str]:
        return sorted(self.catalogue.protocols)

    @property
    def protocol_titles(self) -> dict[str, str]:
        return {name: self.catalogue.protocols[name].title for name in self.protocols}

    def subscribe(self, subscriber: Subscriber) -> None:
        """Tell ``subscriber`` of every session event and link change from now on."""
        self._subscribers.append(subscriber)

    # -- running -------------------------------------------------------------------

    def start(self) -> None:
        """Start keeping every configured gun connected, and the diary's summary read."""
        self._diary_task = asyncio.create_task(self._keep_diary(), name="diary")
        for slot in self.slots.values():
            slot.task = asyncio.create_task(
                self._keep_connected(slot), name=f"slot {slot.device_id}"
            )

    async def wait_connected(self, timeout: float = 10.0) -> None:
        """Wait until every gun is connected (tests and benchmarks use it)."""
        async with asyncio.timeout(timeout):
            while not all(slot.connected for slot in self.slots.values()):
                self._link_changed.clear()
                await self._link_changed.wait()

    async def _connect(self, slot: DeviceSlot) -> Device:
        from gunctl.devices import connect_ble, connect_sim

        if slot.kind == "sim":
            assert slot.spec is not None
            return await connect_sim(
                slot.spec.name,
                clock=self.clock,
                device_id=slot.device_id,
                seed=int(slot.target) + slot.connects,
                exposure=self.history.exposure(simulated=True),
            )
        exposure = self.history.exposure(simulated=self.clock.scale != 1.0)
        proxies = await self._proxies()
        return await connect_ble(slot.target, clock=self.clock, exposure=exposure, proxies=proxies)

    async def _proxies(self) -> Proxies | None:
        """The configured ESPHome proxies, started on first use and kept for the daemon's life."""
        if not self.settings.proxies:
            return None
        async with self._proxies_lock:
            if self.proxies is None:
                from gunctl.links.proxy import Proxies

                proxies = Proxies(self.settings.proxies)
                await proxies.start()
                self.proxies = proxies
        return self.proxies

    async def _keep_connected(self, slot: DeviceSlot) -> None:
        failures = 0
        while not self._closing:
            try:
                device = await self._connector(slot)
            except Exception as exc:
                failures += 1
                if _hopeless(slot, exc, failures):
                    slot.problem = f"given up after {failures} attempts: {exc}"
                    log.error(
                        "device_given_up",
                        device=slot.device_id,
                        target=slot.target,
                        error=str(exc),
                        attempts=failures,
                        advice="check the address with `gunctl scan` and restart gunctl serve",
                    )
                    self._tell_link(slot, False)
                    return
                delay = self.backoff.delay(failures)
                log.warning(
                    "connect_failed",
                    device=slot.device_id,
                    error=str(exc),
                    attempt=failures,
                    retry_in_s=round(delay, 2),
                )
                await asyncio.sleep(delay)
                continue
            if self._closing:
                await device.aclose()
                return
            failures = 0
            slot.connects += 1
            slot.device, slot.spec = device, device.spec
            log.info("device_connected", device=slot.device_id, spec=device.spec.name)
            subscription = device.supervisor.bus.subscribe()
            watcher = asyncio.create_task(
                self._watch(slot, subscription), name=f"events {slot.device_id}"
            )
            self._tell_link(slot, True)
            try:
                reason = await asyncio.shield(device.task)
            except asyncio.CancelledError:
                watcher.cancel()
                raise
            except Exception as exc:
                reason = f"failed: {exc}"
            # hand on the events of the lost link (safety stop, session aborted), then end
            subscription.close()
            await watcher
            self._tell_link(slot, False)
            await device.aclose()
            if self._closing:
                return
            failures += 1
            delay = self.backoff.delay(failures)
            log.warning(
                "device_lost", device=slot.device_id, reason=reason, retry_in_s=round(delay, 2)
            )
            await asyncio.sleep(delay)

    async def _watch(self, slot: DeviceSlot, subscription: Subscription) -> None:
        async for event in subscription:  # ends once closed and drained
            self._tell_event(slot, event)

    def _tell_event(self, slot: DeviceSlot, event: Event) -> None:
        slot.ending.see(event)
        for subscriber in self._subscribers:
            subscriber.on_event(slot, event)

    def _tell_link(self, slot: DeviceSlot, online: bool) -> None:
        self._link_changed.set()
        for subscriber in self._subscribers:
            subscriber.on_link(slot, online)

    # -- commands ------------------------------------------------------------------

    def submit(self, device_id: str, command: DeviceCommand) -> asyncio.Future[Result]:
        """Queue ``command`` on the gun's lane: a stop wins, the rest run in order.

        The future ends with the command's result, or with its CommandError.
        """
        slot = self.slots.get(device_id)
        if slot is None:
            raise CommandError("unknown_device", f"no gun {device_id!r} is served here")
        return slot.lane.submit(command)

    async def execute(self, device_id: str, command: DeviceCommand) -> Result:
        """Carry out ``command`` on ``device_id`` now; return details, or raise CommandError.

        Commands from outside go through :meth:`submit`, which orders them.
        """
        slot = self.slots.get(device_id)
        if slot is None:
            raise CommandError("unknown_device", f"no gun {device_id!r} is served here")
        if isinstance(command, SelectCommand):
            return await self._select(slot, command)
        if isinstance(command, StartCommand):
            return await self._start(slot, command)
        if isinstance(command, ConfirmCommand):
            slot.red_flags_confirmed_at = self.person_clock()
            return {"valid_s": self.settings.red_flags_confirmation_s}
        if isinstance(command, ScoreCommand):
            return await self._score(slot, command)
        if isinstance(command, SeenCommand):
            return await self._seen(slot, command)
        return await self._session(slot, command)

    def _protocol(self, name: str) -> str:
        if name not in self.catalogue.protocols:
            hint = suggest(name, self.protocols) or f" (known: {', '.join(self.protocols)})"
            raise CommandError("unknown_protocol", f"unknown protocol {name!r}{hint}")
        return name

    async def _select(self, slot: DeviceSlot, command: SelectCommand) -> dict[str, Any]:
        if command.protocol is None and command.side is None and command.intensity_cap is None:
            raise CommandError(
                "invalid", "select needs at least one of protocol, side, intensity_cap"
            )
        if command.protocol is not None:
            self._protocol(command.protocol)
        chosen = command.model_dump(include={"protocol", "side", "intensity_cap"})
        slot.selected = slot.selected.model_copy(
            update={k: v for k, v in chosen.items() if v is not None}
        )
        body: dict[str, Any] = {"selected": slot.selected.model_dump()}
        try:
            async with self._selections_lock:  # one writer: the newest choice is the one kept
                await asyncio.to_thread(
                    selections.save,
                    self._selections,
                    {device_id: s.selected for device_id, s in self.slots.items()},
                )
        except OSError as exc:
            log.error("selection_not_saved", path=str(self._selections), error=str(exc))
            body["warning"] = f"chosen, but not kept for after a restart: {exc}"
        return body

    def _check_red_flags(self, slot: DeviceSlot) -> None:
        """Refuse a start unless someone said, just now or in the configuration, none apply."""
        if self.settings.red_flags_acknowledged:
            return
        window = self.settings.red_flags_confirmation_s
        confirmed = slot.red_flags_confirmed_at
        if confirmed is not None and self.person_clock() - confirmed <= window:
            return
        raise CommandError(
            "red_flags_not_acknowledged",
            "first confirm that none of the warning signs apply (Home Assistant's "
            '"No warning signs apply" button, or {"action": "confirm_no_red_flags"}); '
            f"that allows one start within {window / 60:g} min. {SUMMARY} For deliberate "
            "automation, red_flags_acknowledged = true in the gunctl serve configuration "
            "(GUNCTL_RED_FLAGS_ACKNOWLEDGED=true) allows every start without asking.",
        )

    async def _start(self, slot: DeviceSlot, command: StartCommand) -> dict[str, Any]:
        stops = slot.lane.stops
        self._check_red_flags(slot)
        device = slot.device
        if device is None or not device.connected:
            raise CommandError("offline", f"{slot.device_id} is not connected")
        supervisor = device.supervisor
        if supervisor.running:
            raise CommandError(
                "busy", f"a session is already running on {slot.device_id}; stop it first"
            )
        name = command.protocol or slot.selected.protocol
        if name is None:
            raise CommandError("invalid", 'no protocol given, and none selected: add "protocol"')
        protocol = self.catalogue.protocols[self._protocol(name)]
        side = command.side or slot.selected.side
        asked = command.intensity_cap or slot.selected.intensity_cap
        cap = min(asked, self.settings.intensity_cap)
        try:
            plan = make_plan(
                protocol,
                self.catalogue.muscles,
                device.spec,
                side=side,
                user_cap=cap,
                owned_heads=self.settings.heads,
                blocked=await asyncio.to_thread(device.supervisor.exposure.pain_blocks),
            )
        except PlanError as exc:
            raise CommandError("refused", str(exc)) from None
        score = None
        if command.scored:  # recorded before the start, whose diary check then reads it
            try:
                score = await asyncio.to_thread(
                    self.history.record_score,
                    "before",
                    command.pain_before,
                    command.reach_before,
                    simulated=self._simulated(slot),
                )
            except HistoryError as exc:  # unrecorded, the diary could not judge this start
                raise CommandError(
                    "refused", f"the score could not be recorded, so no session: {exc}"
                ) from None
            self._diary_wanted.set()
        if slot.follower is not None and not slot.follower.done():
            # the last session's end is still being written: a new row now would close it
            # as interrupted and lose how it really ended
            await asyncio.wait({slot.follower}, timeout=FOLLOWER_WAIT_S)
        if slot.lane.stops != stops or slot.device is not device:
            raise CommandError("cancelled", "a stop arrived before the session began", command.id)
        subscription = supervisor.bus.subscribe()  # before Start: no event may be missed
        try:
            await supervisor.request(Start(plan))  # handed over at once: nothing awaits before
        except RequestRefusedError as exc:
            subscription.close()
            raise CommandError("refused", str(exc)) from None
        slot.red_flags_confirmed_at = None  # a confirmation is good for one session
        # The next command for this gun waits for this one to finish.
        try:
            session_id = await device.begin_session(
                self.history,
                plan,
                side=side,
                intensity_cap=cap,
                source="mqtt",
                scale=self.clock.scale,
                before_score=score,
            )
        except Exception as exc:
            subscription.close()
            log.error("history_begin_failed", device=slot.device_id, error=str(exc))
            with contextlib.suppress(RequestRefusedError):
                await supervisor.request(SessionAction("stop"))
            raise CommandError(
                "refused", f"the session could not be recorded, so it was stopped: {exc}"
            ) from None
        slot.last_session = session_id

        slot.follower = asyncio.create_task(
            device.record(self.history, subscription, session_id, scale=self.clock.scale),
            name=f"history {slot.device_id}",
        )
        slot.follower.add_done_callback(lambda _: self._diary_wanted.set())  # minutes changed
        log.info(
            "session_requested",
            device=slot.device_id,
            protocol=plan.protocol,
            side=side,
            intensity_cap=cap,
            session=session_id,
        )
        return {
            "session": session_id,
            "protocol": plan.protocol,
            "side": side,
            "intensity_cap": cap,
            "steps": len(plan.steps),
            "planned_s": round(plan.planned_s, 1),
            "skipped": [str(s) for s in plan.skipped],
        }

    async def _session(self, slot: DeviceSlot, command: SessionCommand) -> dict[str, Any]:
        device = slot.device
        if device is None or not device.connected:
            raise CommandError("offline", f"{slot.device_id} is not connected")
        supervisor = device.supervisor
        if command.action == "confirm_head" and device.sim is not None:
            # A simulated gun has no hands to fit the head: it is fitted as asked.
            session = supervisor.session
            if session is not None and session.step is not None:
                device.sim.fit_head(session.step.head)
        try:
            await supervisor.request(SessionAction(command.action))
        except RequestRefusedError as exc:
            raise CommandError("refused", str(exc)) from None
        return {}

    # -- the diary -------------------------------------------------------------------

    def _simulated(self, slot: DeviceSlot) -> bool:
        """Whether the gun's sessions, and so its scores, are the simulator's (kept apart)."""
        return slot.kind == "sim" or self.clock.scale != 1.0

    async def _score(self, slot: DeviceSlot, command: ScoreCommand) -> dict[str, Any]:
        """Record a score: before the next session, or after this gun's latest one."""
        session_id = None
        if command.moment == "after":
            session_id = slot.last_session
            if session_id is None:
                raise CommandError(
                    "invalid",
                    f"{slot.device_id} has run no session since gunctl started, so there is "
                    'none to score after; use "moment": "before" for the next one',
                    command.id,
                    command.action,
                )
        try:
            await asyncio.to_thread(
                self.history.record_score,
                command.moment,
                command.pain,
                command.reach,
                session_id=session_id,
                simulated=self._simulated(slot),
            )
        except HistoryError as exc:
            raise CommandError("refused", str(exc), command.id, command.action) from None
        return {
            "session": session_id,
            "skipped": command.pain is None and command.reach is None,
            "refusal": await self._refusal(slot),
        }

    async def _seen(self, slot: DeviceSlot, command: SeenCommand) -> dict[str, Any]:
        """Record a professional's visit; say, in the result and the log, what it lifted.

        Whoever may command the gun may record a visit (docs/diary.md says why):
        it lifts a safety refusal, so it is never silent.
        """
        kind = self._simulated(slot)
        lifted = await asyncio.to_thread(self.history.diary_refusal, simulated=kind)
        try:
            await asyncio.to_thread(
                self.history.record_professional, command.note, simulated=kind, source="mqtt"
            )
        except HistoryError as exc:
            raise CommandError("refused", str(exc), command.id, command.action) from None
        log.warning(
            "diary_refusal_lifted" if lifted else "professional_visit",
            device=slot.device_id,
            rule=None if lifted is None else lifted.rule,
            note=command.note,
            id=command.id,
        )
        return {
            "lifted": None if lifted is None else lifted.rule,
            "refusal": await self._refusal(slot),
        }

    async def _refusal(self, slot: DeviceSlot) -> dict[str, Any] | None:
        """Read the diary again; the refusal now in force for this gun's kind of session."""
        await self.refresh_diary()
        summary = self.diary["simulated" if self._simulated(slot) else "real"]
        return None if summary.refusal is None else summary.refusal.model_dump()

    def watch_diary(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` (on the event loop) each time the diary's summary is read anew."""
        self._diary_watchers.append(callback)

    async def refresh_diary(self) -> None:
        """Read the diary's summary, real and simulated, in a worker thread; tell the watchers."""

        def read() -> dict[str, DiarySummary]:
            return {
                kind: self.history.diary_summary(simulated=kind == "simulated")
                for kind in ("real", "simulated")
            }

        self.diary = await asyncio.to_thread(read)
        for callback in self._diary_watchers:
            callback()

    async def _keep_diary(self) -> None:
        while True:
            try:
                await self.refresh_diary()
            except Exception as exc:  # a damaged diary must not end the daemon; said once a round
                log.error("diary_unreadable", error=str(exc))
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(DIARY_REFRESH_S):  # 3.11's wait_for may lose a cancel
                    await self._diary_wanted.wait()
            self._diary_wanted.clear()

    def stop_all(self) -> asyncio.Future[list[str]]:
        """Stop every gun at once, each through its lane; the future gives the ids stopped.

        The stops are taken here and now, so they are in order with every other
        command: whatever arrives after this call runs after the stops.
        """
        slots = list(self.slots.values())  # an offline gun's waiting commands are cancelled too
        stop = SessionCommand(action="stop")
        outcomes = asyncio.gather(*(s.lane.submit(stop) for s in slots), return_exceptions=True)
        return asyncio.ensure_future(self._stopped(slots, outcomes))

    async def _stopped(
        self, slots: list[DeviceSlot], outcomes: asyncio.Future[list[Any]]
    ) -> list[str]:
        stopped = []
        for slot, outcome in zip(slots, await outcomes, strict=True):
            if not isinstance(outcome, BaseException):
                stopped.append(slot.device_id)
            elif slot.connected:
                log.error("stop_failed", device=slot.device_id, error=str(outcome))
        return stopped

    # -- closing -------------------------------------------------------------------

    async def aclose(self) -> None:
        """Stop every motor, end every Supervisor, close the history."""
        self._closing = True
        await self.stop_all()
        for slot in self.slots.values():
            await slot.lane.aclose()
        followers = [s.follower for s in self.slots.values() if s.follower is not None]
        for slot in self.slots.values():
            if slot.device is not None:
                await slot.device.aclose()
        if followers:
            await asyncio.wait(followers, timeout=2.0)
        for slot in self.slots.values():
            if slot.task is not None:
                slot.task.cancel()
        await asyncio.gather(
            *(s.task for s in self.slots.values() if s.task is not None), return_exceptions=True
        )
        for task in followers:
            task.cancel()
        await asyncio.gather(*followers, return_exceptions=True)
        if self.proxies is not None:
            await self.proxies.aclose()
        if self._diary_task is not None:
            self._diary_task.cancel()
            await asyncio.gather(self._diary_task, return_exceptions=True)
        self.history.close()
