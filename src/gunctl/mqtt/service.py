"""``gunctl serve`` put together: the daemon (guns) and the bridge (broker), and how they stop.

Stopping, on SIGTERM or SIGINT or :meth:`Service.stop`, goes in the order that
keeps people safe: every motor is stopped first, the events of those stops are
published, then every device and the bridge are announced ``offline`` and the
connection is closed; last, the links are let go and the history is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal

import structlog

from gunctl.clock import Clock
from gunctl.config import ServeSettings
from gunctl.daemon import Daemon
from gunctl.mqtt.bridge import Bridge
from gunctl.profiles.loader import Catalogue
from gunctl.store.history import History
from gunctl.systemd import Notifier, cpu_priority, watch

log = structlog.get_logger("gunctl.serve")

FLUSH_S = 0.1  # time for the stop events to travel from the buses to the outbox


class Service:
    def __init__(
        self,
        settings: ServeSettings,
        *,
        clock: Clock | None = None,
        history: History | None = None,
        catalogue: Catalogue | None = None,
    ) -> None:
        self.settings = settings
        self.daemon = Daemon(settings, clock=clock, history=history, catalogue=catalogue)
        self.bridge = Bridge(settings, self.daemon)
        self._bridge_task: asyncio.Task[None] | None = None
        self._stopped = False

    async def start(self) -> None:
        # whether the unit's CPU priority (docs/gunctl.service) took effect, for a person to see
        log.info("cpu_priority", **cpu_priority())
        if not self.settings.red_flags_acknowledged:
            log.warning(
                "red_flags_not_acknowledged",
                message="every start over MQTT needs a person's confirmation that none of the "
                "warning signs apply just before it (Home Assistant's 'No warning signs apply', "
                "or the confirm_no_red_flags command); for unattended automation set "
                "red_flags_acknowledged = true (GUNCTL_RED_FLAGS_ACKNOWLEDGED=true) after "
                "reading the warning signs in docs/mqtt.md; stops work as always",
            )
        self.daemon.start()
        self._bridge_task = asyncio.create_task(self.bridge.run(), name="mqtt bridge")

    async def stop(self) -> None:
        """Stop every motor, publish offline, disconnect, close. Safe to call twice."""
        if self._stopped:
            return
        self._stopped = True
        log.info("stopping", node=self.settings.node_id)
        stopped = await self.daemon.stop_all()
        log.info("motors_stopped", devices=stopped)
        await asyncio.sleep(FLUSH_S)
        self.bridge.stop()
        if self._bridge_task is not None:
            with contextlib.suppress(TimeoutError, asyncio.CancelledError):
                async with asyncio.timeout(10.0):
                    await self._bridge_task
        await self.daemon.aclose()
        log.info("stopped", node=self.settings.node_id)

    async def run(self) -> None:
        """Serve until SIGTERM or SIGINT (or the bridge fails), then stop cleanly."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await self.start()
        # What exists now (catalogue, specs, models, modules) lives as long as the process:
        # left out of every later collection, a full collection no longer stalls the
        # control loops for tens of milliseconds (bench/mqtt_flood.py measured 50-130 ms).
        gc.freeze()
        assert self._bridge_task is not None
        notifier = Notifier.from_env()  # under systemd: READY=1, and the watchdog fed
        watchdog = asyncio.create_task(watch(self, notifier)) if notifier.enabled else None
        waiter = asyncio.create_task(stop.wait())
        try:
            await asyncio.wait([waiter, self._bridge_task], return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
            if watchdog is not None:
                watchdog.cancel()
                notifier.notify("STOPPING=1")
            await self.stop()
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
