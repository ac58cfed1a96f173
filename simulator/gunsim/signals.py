"""Serving from the shell until Ctrl-C or SIGTERM, for `gunsim bluez` and `gunsim proxy`."""

from __future__ import annotations

import asyncio
import signal


async def until_stopped() -> None:
    """Return on the first SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
