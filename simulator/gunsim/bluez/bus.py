"""A private D-Bus daemon for the fake BlueZ, so nothing touches the host's system bus.

``private_bus()`` writes a bus configuration into a temporary directory, starts
``dbus-daemon`` on a unix socket there, yields the bus address, and stops the
daemon at the end. Point bleak at it with ``DBUS_SYSTEM_BUS_ADDRESS``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>custom</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow receive_sender="*"/>
    <allow eavesdrop="true"/>
  </policy>
</busconfig>
"""

BOOTSTRAP_HINT = "dbus-daemon is not installed: run scripts/bootstrap to install it"


class BusUnavailableError(RuntimeError):
    """dbus-daemon is missing or would not start."""


def dbus_daemon() -> str:
    """The dbus-daemon program; raises BusUnavailableError with what to do if it is missing."""
    path = shutil.which("dbus-daemon") or (
        "/usr/bin/dbus-daemon" if Path("/usr/bin/dbus-daemon").exists() else None
    )
    if path is None:
        raise BusUnavailableError(BOOTSTRAP_HINT)
    return path


@contextlib.contextmanager
def private_bus_sync() -> Iterator[str]:
    """Start a private dbus-daemon; yield its address; stop it on the way out."""
    program = dbus_daemon()
    with tempfile.TemporaryDirectory(prefix="gunsim-bus-") as tmp:
        config = Path(tmp) / "bus.conf"
        config.write_text(_CONFIG.format(socket=Path(tmp) / "bus.sock"))
        process = subprocess.Popen(
            [program, "--nofork", "--nopidfile", f"--config-file={config}", "--print-address"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert process.stdout is not None
            address = process.stdout.readline().strip()
            if not address:
                raise BusUnavailableError(f"dbus-daemon exited with {process.wait(timeout=5)}")
            yield address
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()


@contextlib.asynccontextmanager
async def private_bus() -> AsyncIterator[str]:
    """``private_bus_sync`` for ``async with``: the daemon starts in well under a second."""
    with private_bus_sync() as address:
        yield address
