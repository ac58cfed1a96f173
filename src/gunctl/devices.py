"""A connected device with its Supervisor running: what `run` and `serve` both drive.

``connect_sim`` starts an in-process simulated gun; ``connect_ble`` finds a
real (or fake-BlueZ) gun over bleak, through the local adapter or through
ESPHome Bluetooth proxies. Either way the caller gets a ``Device``
whose Supervisor is already supervising, and hands it requests; closing it
stops the motor first, then lets go of the link.

Guns are set up and torn down one at a time per event loop (``_turn``): when
fifteen guns come or go together, each one's set-up runs in a turn of the loop
of its own, so the Supervisors already running tick between them instead of
waiting for all fifteen.
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gunctl.clock import Clock
from gunctl.control.events import Subscription
from gunctl.control.supervisor import Exposure, Supervisor
from gunctl.links.base import Link
from gunctl.requests import Request
from gunctl.specs.loader import get_spec
from gunctl.specs.models import DeviceSpec
from gunctl.state import GunState, snapshot
from gunctl.store.history import History, SessionRecord, Source, follow
from gunctl.store.trace import sampler

if TYPE_CHECKING:
    from gunctl.links.ble import BleakLink
    from gunctl.links.proxy import Proxies
    from gunctl.profiles.plan import Plan
    from gunsim import SimDevice

DEFAULT_SIM_SPEC = "gunctl-open"  # the family that reports everything, for the richest demo


@dataclass
class Device:
    device_id: str
    spec: DeviceSpec
    link: Link
    supervisor: Supervisor
    task: asyncio.Task[str]
    sim: SimDevice | None = None
    ble: BleakLink | None = None  # the link again, when it is a Bluetooth LE one
    _closed: bool = field(default=False, repr=False)

    @property
    def connected(self) -> bool:
        return self.link.connected and not self.task.done()

    @property
    def simulated(self) -> bool:
        """The in-process simulator: history keeps its sessions apart from a person's."""
        return self.sim is not None

    @property
    def advertised(self) -> tuple[str | None, str] | None:
        """The name a Bluetooth LE gun advertised (if any) and its address; None otherwise."""
        if self.ble is None:
            return None
        return self.ble.ble_device.name, self.ble.ble_device.address

    @property
    def rssi(self) -> int | None:
        """The advertised signal strength (dBm) of a Bluetooth LE gun; None otherwise."""
        return self.ble.rssi if self.ble is not None else None

    def subscribe(self) -> Subscription:
        """The session events from now on; subscribe before a start to miss none."""
        return self.supervisor.bus.subscribe()

    async def request(self, request: Request) -> None:
        """Hand a request to the Supervisor; raises RequestRefusedError if refused."""
        await self.supervisor.request(request)

    async def begin_session(
        self,
        history: History,
        plan: Plan,
        *,
        side: str | None,
        intensity_cap: float | None,
        source: Source,
        scale: float,
        before_score: int | None = None,
    ) -> int:
        """Write the row of a session the Supervisor has taken; its id, for ``record``.

        Written only once the start was taken, so a refused start leaves no row;
        every session begins at a head change, so the motor waits for no write here.
        ``before_score`` is the id of the diary's score given for this session
        ahead of it, tied to the session as its row is written.
        """

        def begin() -> int:
            session_id = history.begin(
                device=self.device_id,
                protocol=plan.protocol,
                spec=self.spec.name,
                side=side,
                intensity_cap=intensity_cap,
                planned_s=plan.planned_s,
                source=source,
                simulated=self.simulated,
                time_scale=scale,
            )
            if before_score is not None:
                history.attach_score(before_score, session_id)
            return session_id

        return await asyncio.to_thread(begin)

    def record(
        self, history: History, events: Subscription, session_id: int, *, scale: float
    ) -> Coroutine[Any, Any, SessionRecord | None]:
        """Follow the session into ``history``: its events, motor seconds and trace.

        ``events`` is a subscription taken before the start; ``scale`` is the
        clock's, so the trace and checkpoints count session time.
        """
        supervisor = self.supervisor

        def progress() -> dict[tuple[str, str], float]:
            session = supervisor.session
            return dict(session.worked) if session is not None else {}

        return follow(
            history, events, session_id, progress=progress, sample=sampler(supervisor), scale=scale
        )

    def state(self) -> GunState:
        """The gun's public state now: what every display reads, never the Supervisor."""
        return snapshot(self.device_id, self.supervisor, connected=self.connected)

    async def aclose(self) -> None:
        """Stop the motor, end the Supervisor, drop the link, power off a simulator."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(Exception):
            await self.supervisor.close()  # the stop frame waits for no other gun
        async with _turn():
            with contextlib.suppress(Exception):
                await self.task
            with contextlib.suppress(Exception):
                await self.link.disconnect()
            if self.sim is not None:
                await self.sim.aclose()


_TURNS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def _turn() -> AsyncIterator[None]:
    """Held while one gun is set up or torn down on this event loop, into the loop's next turn."""
    loop = asyncio.get_running_loop()
    lock = _TURNS.get(loop)
    if lock is None:
        lock = _TURNS[loop] = asyncio.Lock()
    async with lock:
        yield
        await asyncio.sleep(0)  # the next gun waits for the next turn


def _supervise(
    device_id: str,
    spec: DeviceSpec,
    link: Link,
    clock: Clock,
    sim: SimDevice | None,
    *,
    ble: BleakLink | None = None,
    **options: Any,
) -> Device:
    supervisor = Supervisor(spec, link, clock=clock, device_id=device_id, **options)
    task = asyncio.create_task(supervisor.run(), name=f"supervisor {device_id}")
    return Device(device_id, spec, link, supervisor, task, sim, ble)


async def connect_sim(
    spec_name: str = DEFAULT_SIM_SPEC,
    *,
    clock: Clock,
    device_id: str,
    seed: int = 0,
    person: Any = None,
    exposure: Exposure | None = None,
    **options: Any,
) -> Device:
    """Switch on a simulated gun and supervise it over the in-process link."""
    from gunctl.links.sim import SimLink
    from gunsim import RandomPerson, SimDevice

    spec = get_spec(spec_name)
    async with _turn():
        sim = SimDevice(
            spec,
            clock=clock,
            seed=seed,
            address=device_id,
            person=person
            if person is not None
            else RandomPerson(seed, typical_n=18, too_hard_chance=0.0),
        )
        await sim.start()
        link = SimLink(sim)
        await link.connect()
    async with _turn():
        return _supervise(device_id, spec, link, clock, sim, exposure=exposure, **options)


async def connect_ble(
    address_or_name: str,
    *,
    clock: Clock,
    spec_name: str | None = None,
    timeout: float = 10.0,
    exposure: Exposure | None = None,
    proxies: Proxies | None = None,
    **options: Any,
) -> Device:
    """Find a gun over BLE, connect through bleak, and supervise it.

    With ``proxies`` the gun is reached through the local adapter or the
    ESPHome Bluetooth proxy that hears it best, otherwise through the local
    adapter.
    """
    from gunctl.links.ble import open_ble_link

    link: BleakLink
    if proxies is not None:
        link, spec = await proxies.open_best_link(
            address_or_name, spec_name, clock=clock, timeout=timeout
        )
    else:
        link, spec = await open_ble_link(address_or_name, spec_name, clock=clock, timeout=timeout)
    async with _turn():  # guns heard in one scan start connecting a turn apart
        pass
    await link.connect()
    async with _turn():
        return _supervise(
            link.address, spec, link, clock, None, ble=link, exposure=exposure, **options
        )
