"""``gunctl serve`` under systemd: ready when it can serve, watchdog fed only while it controls.

With ``Type=notify`` and ``WatchdogSec=`` (the unit in docs/gunctl.service),
systemd hands the service a socket (``NOTIFY_SOCKET``) and a watchdog period
(``WATCHDOG_USEC``). ``READY=1`` is sent once the broker connection and every
configured gun are up. ``WATCHDOG=1`` is then sent every half period, but only
while every connected gun's control loop has ticked within the last
``FROZEN_S``: a daemon whose event loop or one of whose Supervisors froze stops
feeding, systemd kills it, its Bluetooth links drop, and each gun's firmware
watchdog stops its motor. The daemon then restarts with every gun stopped.

The notification protocol is one datagram per message on a Unix socket
(sd_notify(3)). It is written here in a few lines: the bindings to libsystemd
need its headers and a C compiler to install, for what is a single
``sendto``; the socket is non-blocking, so a notification never holds up the
event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

if TYPE_CHECKING:
    from gunctl.mqtt.service import Service

log = structlog.get_logger("gunctl.systemd")

FROZEN_S = 1.0  # a control loop that has not ticked for this long is frozen (50 ticks missed)
CGROUP_ROOT = Path("/sys/fs/cgroup")


def cpu_priority(cgroup_root: Path = CGROUP_ROOT) -> dict[str, Any]:
    """The CPU priority this process runs at, as the service manager set it (or did not).

    The unit in docs/gunctl.service gives the daemon ``Nice=-10`` and
    ``CPUWeight=1000`` so its control loops do not wait behind other services
    for a core. This says what took effect: the niceness, the scheduling policy
    and, on cgroup v2 with the CPU controller on for this process's cgroup, its
    ``cpu.weight`` (None where there is none: then only the niceness ranks it).
    The daemon never changes its own priority; it only reports it (its commands
    process lowers its own, :data:`gunctl.mqtt.screen.NICENESS`).
    """
    policies = {os.SCHED_OTHER: "other", os.SCHED_BATCH: "batch", os.SCHED_IDLE: "idle"}
    policies |= {os.SCHED_FIFO: "fifo", os.SCHED_RR: "rr"}
    policy = os.sched_getscheduler(0)
    weight: int | None = None
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):  # the unified hierarchy (cgroup v2)
                path = cgroup_root / line[3:].strip().lstrip("/") / "cpu.weight"
                weight = int(path.read_text())
    return {
        "nice": os.getpriority(os.PRIO_PROCESS, 0),
        "policy": policies.get(policy, str(policy)),
        "cpu_weight": weight,
    }


@dataclass(frozen=True)
class Notifier:
    """Where to tell systemd things, and how often it wants to hear that all is well."""

    address: str | None
    watchdog_s: float | None  # systemd's WatchdogSec, None when no watchdog is set

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        usec = env.get("WATCHDOG_USEC")
        pid = env.get("WATCHDOG_PID")
        mine = pid is None or pid == str(os.getpid())
        watchdog = int(usec) / 1e6 if usec and mine else None
        return cls(env.get("NOTIFY_SOCKET") or None, watchdog)

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> None:
        """Send ``fields`` (``READY=1``, ``WATCHDOG=1``, ``STATUS=...``) as one message."""
        if self.address is None:
            return
        # a leading @ names a socket in the abstract namespace
        address = "\0" + self.address[1:] if self.address.startswith("@") else self.address
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.setblocking(False)
            try:
                sock.sendto("\n".join(fields).encode(), address)
            except OSError as exc:  # systemd gone or busy: the watchdog will say so
                log.warning("notify_failed", fields=fields, error=str(exc))


def frozen_loops(service: Service, now: float | None = None) -> list[str]:
    """The connected guns whose control loop has not ticked within FROZEN_S."""
    now = time.monotonic() if now is None else now
    return [
        device_id
        for device_id, slot in sorted(service.daemon.slots.items())
        if slot.device is not None
        and slot.connected
        and now - slot.device.supervisor.loop_stats.last_at > FROZEN_S
    ]


async def watch(service: Service, notifier: Notifier) -> None:
    """Say ready once broker, commands process and guns are up; then feed the watchdog while
    every loop ticks."""
    await service.bridge.connected.wait()
    await service.bridge.setline.connected.wait()
    while True:
        try:
            await service.daemon.wait_connected(timeout=3600)
            break
        except TimeoutError:
            continue
    guns = len(service.daemon.slots)
    notifier.notify("READY=1", f"STATUS=serving {guns} gun(s), broker connected")
    log.info("systemd_ready", guns=guns)
    if notifier.watchdog_s is None:
        return
    withheld = False
    while True:
        await asyncio.sleep(notifier.watchdog_s / 2)
        frozen = frozen_loops(service)
        if frozen:
            if not withheld:
                log.error("watchdog_withheld", frozen=frozen, after_s=FROZEN_S)
            withheld = True
            continue
        withheld = False
        notifier.notify("WATCHDOG=1")
