"""The set line: the commands process (:mod:`gunctl.mqtt.screen`), started, fed and watched.

The daemon starts it as ``python -m gunctl.mqtt.screen`` with
:class:`subprocess.Popen` in a worker thread (a fork and exec held the event
loop for 7 ms), and reads its stdout as an asyncio stream. Not
:mod:`multiprocessing`: it runs one module in a fresh interpreter, where
``spawn`` would import the daemon's ``__main__`` (the CLI, a test runner, a
benchmark) again in it; nothing has to be pickled; and its pipes are plain
ones, so the end of a pipe is the end of the other side both ways: the daemon
closing stdin (or dying) ends the process, the process ending closes stdout.
What goes over the pipes is one JSON line per message: the
:class:`~gunctl.mqtt.screen.Setup` once on stdin; on stdout the commands for
the daemon's guns and for the bridge that passed the screen, in the order
read, the counts of what was refused, and a word when the connection comes up
or goes down.

If the process ends, for whatever reason, that is logged (as a warning if it
ended with its lost connection, as an error otherwise), and another is started
after a jittered back-off (doubling from 0.5 s up to 15 s while they keep
ending before connecting): the one way back from a lost connection, a failed
one and a crash. Meanwhile nothing reads the
``set`` topics: a command published there gets no result and is not carried
out later (the broker keeps no session for the process, so nothing stale
runs when it is back); the stop line (:mod:`gunctl.mqtt.stopline`) is a
connection of the daemon's own and stops every gun as before. What the
process sends is taken in slices of at most :data:`gunctl.mqtt.handoff.SLICE_S`,
the control loops running between two.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import structlog
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from gunctl.config import ServeSettings
from gunctl.daemon import Backoff
from gunctl.mqtt.client import Incoming
from gunctl.mqtt.handoff import SLICE_S
from gunctl.mqtt.intake import Intake
from gunctl.mqtt.screen import Setup
from gunctl.mqtt.topics import Topics

log = structlog.get_logger("gunctl.mqtt")

PIPE_BYTES = 4096  # the least a Linux pipe holds: about 45 commands
LINE_LIMIT = 64 * 1024  # the longest line the process writes is a 4 KiB payload, escaped
LEAVE_S = 2.0  # for the process to disconnect and end once stdin is closed, before a kill


class SetLine:
    def __init__(
        self,
        settings: ServeSettings,
        topics: Topics,
        intake: Intake,
        identifier: str,
        instance: str,
        backoff: Backoff,
    ) -> None:
        self.topics = topics
        self.intake = intake
        self.backoff = backoff
        self.setup = Setup(
            mqtt=settings.mqtt,
            node_id=settings.node_id,
            identifier=identifier,
            instance=instance,
            devices=sorted(intake.daemon.slots),
            log_json=settings.log_json,
            log_level=settings.log_level,
        )
        self.connected = asyncio.Event()  # set while the process is connected and subscribed
        self.connections = 0
        self.restarts = 0  # processes started after one ended
        self.taken = 0  # commands the process handed the daemon
        self.refused = 0  # messages the process refused (shed ones included)
        self.most_waiting = 0  # the most commands that waited in the process for the daemon
        self.pid: int | None = None
        self._counted: dict[str, Any] = {}  # the process's counts as last heard

    async def run(self) -> None:
        """Keep a commands process running until cancelled."""
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            process = await asyncio.to_thread(self._start)  # fork and exec block for ms
            self.pid, self._counted = process.pid, {}
            connections = self.connections
            try:
                assert process.stdout is not None
                stdout = asyncio.StreamReader(limit=LINE_LIMIT)
                transport, _ = await loop.connect_read_pipe(
                    functools.partial(asyncio.StreamReaderProtocol, stdout), process.stdout
                )
                try:
                    await self._read(stdout)  # until it ends
                finally:
                    transport.close()
            finally:
                self.connected.clear()
                code = await asyncio.to_thread(_end, process)
            failures = 1 if self.connections > connections else failures + 1
            delay = self.backoff.delay(failures)
            # 0: it ended with its connection, and said so; anything else, it failed or died
            said = log.warning if code == 0 else log.error
            said("set_line_ended", returncode=code, retry_in_s=round(delay, 2))
            await asyncio.sleep(delay)
            self.restarts += 1

    def _start(self) -> subprocess.Popen[bytes]:
        """In a worker thread: start the process and tell it what it needs."""
        process = subprocess.Popen(
            [sys.executable, "-m", "gunctl.mqtt.screen"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        assert process.stdin is not None
        assert process.stdout is not None
        # What waits for the daemon is bounded by the process (screen.WAITING), not by
        # that plus the 64 KiB a pipe holds by default, some 1,400 more commands: a stop
        # behind them would cancel them all in one go on the event loop (gunctl.lane).
        with contextlib.suppress(OSError, AttributeError):  # Linux only
            fcntl.fcntl(process.stdout.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
        with contextlib.suppress(BrokenPipeError):  # it ended at once: read as such
            process.stdin.write(self.setup.model_dump_json().encode() + b"\n")
            process.stdin.flush()
        return process

    async def _read(self, stdout: asyncio.StreamReader) -> None:
        """Take what the process says, in order, handing the loop back every SLICE_S."""
        ends = time.perf_counter() + SLICE_S
        async for line in stdout:
            try:
                self._take(json.loads(line))
            except Exception:
                log.exception("message_failed", line=line[:200])
            if time.perf_counter() >= ends:
                await asyncio.sleep(0)
                ends = time.perf_counter() + SLICE_S

    def _take(self, said: dict[str, Any]) -> None:
        if "topic" in said:
            self.taken += 1
            self._command(said)
        elif "counts" in said:
            self._counts(said["counts"])
        elif said.get("connected"):
            self.connections += 1
            self.connected.set()
            log.info("set_line_connected", connection=self.connections)
        else:
            self.connected.clear()

    def _command(self, said: dict[str, Any]) -> None:
        properties = None
        if "response" in said:
            properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
            properties.ResponseTopic = said["response"]
            if "correlation" in said:
                properties.CorrelationData = bytes.fromhex(said["correlation"])
        message = Incoming(said["topic"], said["payload"].encode(), False, properties)
        if message.topic in (self.topics.bridge_set, self.topics.bridge_set_all):
            self.intake.bridge_command(message)
        elif (device_id := self.topics.device_of(message.topic, "set")) in self.intake.daemon.slots:
            assert device_id is not None
            self.intake.device_command(device_id, message)

    def _counts(self, counts: dict[str, Any]) -> None:
        """The process's counts since it started: the daemon's tally adds what changed."""
        before = self._counted or {"rejected": {}, "refused": {}, "unanswered": 0}
        self._counted = counts
        self.most_waiting = max(self.most_waiting, counts["most_waiting"])
        rejected = Counter(counts["rejected"]) - Counter(before["rejected"])
        self.refused += rejected.total()
        self.intake.counted(
            dict(rejected),
            dict(Counter(counts["refused"]) - Counter(before["refused"])),
            counts["unanswered"] - before["unanswered"],
        )

    def stats(self) -> dict[str, Any]:
        """For the diagnostics."""
        return {
            "connected": self.connected.is_set(),
            "connections": self.connections,
            "restarts": self.restarts,
            "taken": self.taken,
            "refused": self.refused,
            "most_waiting": self.most_waiting,
            "neighbours": self._counted.get("neighbours"),  # the process's own, as last heard
        }


def _end(process: subprocess.Popen[bytes]) -> int:
    """In a worker thread: close its stdin, which ends it; kill it if it is still there
    LEAVE_S later. Its exit status."""
    assert process.stdin is not None
    with contextlib.suppress(BrokenPipeError):
        process.stdin.close()
    try:
        return process.wait(LEAVE_S)
    except subprocess.TimeoutExpired:
        process.kill()
        return process.wait()
