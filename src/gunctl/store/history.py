"""The session history, in SQLite: what was worked, for how long, and how it ended.

It answers one safety question, how long a muscle side was worked in the last
48 hours (``History.exposure_s``, read by the Supervisor at session start), so
the record has to survive the process that writes it:

- A session row is written with status ``running`` before the motor turns, and
  every event commits at once. Between step ends the per-muscle time on disk is
  an estimate from the session clock that errs high: rest after a step counts
  until the step ends, and under ``follow``, which writes the Supervisor's
  exact counters every ``CHECKPOINT_S``, the time on disk runs one such
  interval ahead while the motor runs, so a kill between writes never
  under-counts.
- The row names the process writing it (pid, host, and the process's start
  time where ``/proc`` gives it, so a reused pid is not mistaken for the
  writer). Whoever opens the history next closes a ``running`` row whose
  writer is gone as ``aborted`` with reason ``interrupted``, keeping the time
  already recorded. A crash or SIGKILL leaves an accurate aborted record.

The database is in WAL mode with ``synchronous=NORMAL``: a commit is in the
write-ahead log, in the operating system's hands, before ``record`` returns,
so a crash or kill of gunctl loses nothing; only a power cut can lose the last
commits, and never corrupts the file. ``FULL`` would fsync on every event,
which on a Raspberry Pi's SD card can take tens of milliseconds a time for no
gain against the failures this store is built for. Writes from ``follow`` run
in a worker thread, so the control loop never waits for the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import shutil
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Literal, get_args

import structlog

from gunctl.clock import Clock, wall_now
from gunctl.control.events import (
    ENDING_EVENTS,
    Event,
    HeadChangeRequired,
    PainReported,
    Paused,
    Resumed,
    SafetyStop,
    SafetyWarning,
    SessionAborted,
    SessionCompleted,
    SessionStarted,
    StepCompleted,
    StepStarted,
    Subscription,
)
from gunctl.datafile import DataModel
from gunctl.errors import StorageError
from gunctl.profiles.plan import ExposureCheck, ExposureRefused, Want
from gunctl.store.diary import (
    DiaryData,
    DiaryRule,
    DiarySettings,
    DiarySummary,
    DiaryVerdict,
    Moment,
    Reach,
    Refusal,
    Score,
    ScoreError,
    Week,
    days_end,
    first_refusal,
    weekly,
)
from gunctl.store.trace import CHUNK_SAMPLES, TRACE_HZ, Mark, Sample, Trace, decode, encode

log = structlog.get_logger("gunctl.history")

ENV_DIR = "GUNCTL_DATA_DIR"
FULL_BELOW = 64 * 1024  # bytes free under which SQLite's I/O error is a full disk
DB_NAME = "history.sqlite3"
EXPOSURE_WINDOW = timedelta(hours=48)
INTERRUPTED = "interrupted"
CHECKPOINT_S = 5.0  # real seconds between writes of a running session's exact counters

Status = Literal["running", "completed", "aborted"]
Source = Literal["cli", "mqtt", "python"]  # gunctl run, gunctl serve, import gunctl
Key = tuple[str, str]  # (muscle, side)

_SESSION_COLUMNS = (
    "id, started_at, ended_at, updated_at, device, spec, protocol, side, intensity_cap, status, "
    "end_reason, end_message, planned_s, steps, worked_s, source, pid, host, proc_start, "
    "simulated, time_scale"
)  # the sessions table at schema version 4, copied whole by the rebuild to version 5

# MIGRATIONS[n] takes the schema from version n to version n + 1. Append, never edit.
MIGRATIONS: list[tuple[str, ...]] = [
    (
        """
        CREATE TABLE sessions (
            id            INTEGER PRIMARY KEY,
            started_at    TEXT NOT NULL,  -- wall clock, UTC, ISO 8601
            ended_at      TEXT,
            updated_at    TEXT NOT NULL,  -- last write: when a crashed session was last heard of
            device        TEXT NOT NULL,
            spec          TEXT,
            protocol      TEXT NOT NULL,
            side          TEXT,
            intensity_cap REAL,
            status        TEXT NOT NULL CHECK (status IN ('running', 'completed', 'aborted')),
            end_reason    TEXT,
            end_message   TEXT,
            planned_s     REAL,
            steps         INTEGER,
            worked_s      REAL NOT NULL DEFAULT 0,
            source        TEXT NOT NULL CHECK (source IN ('cli', 'mqtt')),
            pid           INTEGER NOT NULL,
            host          TEXT NOT NULL,
            proc_start    TEXT  -- the writer's start time in /proc, against pid reuse
        )
        """,
        "CREATE INDEX sessions_started_at ON sessions (started_at)",
        "CREATE INDEX sessions_running ON sessions (status) WHERE status = 'running'",
        """
        CREATE TABLE muscle_time (
            session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            muscle     TEXT NOT NULL,
            side       TEXT NOT NULL,
            worked_s   REAL NOT NULL,
            PRIMARY KEY (session_id, muscle, side)
        )
        """,
        "CREATE INDEX muscle_time_muscle ON muscle_time (muscle, side)",
        """
        CREATE TABLE safety_stops (
            id         INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            at         REAL NOT NULL,  -- session clock seconds
            rule       TEXT NOT NULL,
            message    TEXT NOT NULL,
            "values"   TEXT NOT NULL,  -- JSON object
            step_index INTEGER
        )
        """,
        """
        CREATE TABLE pain_reports (
            id         INTEGER PRIMARY KEY,
            session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            at         REAL NOT NULL,  -- session clock seconds
            muscle     TEXT NOT NULL,
            side       TEXT NOT NULL,
            step_index INTEGER
        )
        """,
    ),
    (
        # A session on the simulator, or faster than real time, is kept apart from a
        # person's real ones: it never counts toward their exposure or pain blocks.
        "ALTER TABLE sessions ADD COLUMN simulated INTEGER NOT NULL DEFAULT 0",
        "ALTER TABLE sessions ADD COLUMN time_scale REAL NOT NULL DEFAULT 1",
        "ALTER TABLE pain_reports ADD COLUMN reported_at TEXT",  # wall clock, UTC, ISO 8601
    ),
    (
        # The exposure ledger: the time each running session has reserved on a
        # muscle side, read by every start on the machine (see History.reserve).
        """
        CREATE TABLE reservations (
            host       TEXT NOT NULL,
            pid        INTEGER NOT NULL,
            proc_start TEXT,
            device     TEXT NOT NULL,
            muscle     TEXT NOT NULL,
            side       TEXT NOT NULL,
            simulated  INTEGER NOT NULL,
            seconds    REAL NOT NULL,
            made_at    TEXT NOT NULL,
            PRIMARY KEY (host, pid, device, muscle, side)
        )
        """,
    ),
    (
        # The symptom diary (gunctl.store.diary): pain scores before and after sessions,
        # and when the person saw a professional, which starts the rules' new baseline.
        """
        CREATE TABLE scores (
            id          INTEGER PRIMARY KEY,
            recorded_at TEXT NOT NULL,  -- wall clock, UTC, ISO 8601
            simulated   INTEGER NOT NULL,
            session_id  INTEGER REFERENCES sessions (id) ON DELETE SET NULL,
            moment      TEXT NOT NULL CHECK (moment IN ('before', 'after')),
            pain        INTEGER CHECK (pain BETWEEN 0 AND 10),
            reach       TEXT CHECK (reach IN ('buttock', 'thigh', 'below_knee', 'foot')),
            skipped     INTEGER NOT NULL
        )
        """,
        "CREATE INDEX scores_recorded_at ON scores (simulated, recorded_at)",
        "CREATE UNIQUE INDEX scores_session ON scores (session_id, moment) "
        "WHERE session_id IS NOT NULL",
        """
        CREATE TABLE professional_visits (
            id          INTEGER PRIMARY KEY,
            recorded_at TEXT NOT NULL,
            simulated   INTEGER NOT NULL,
            note        TEXT NOT NULL
        )
        """,
        # Each session's telemetry trace (gunctl.store.trace), chunk by chunk, and the
        # warnings and step starts drawn on it (stops and pain are in their own tables).
        """
        CREATE TABLE trace_chunks (
            session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            t0         REAL NOT NULL,  -- session clock seconds of the first sample
            data       BLOB NOT NULL,
            PRIMARY KEY (session_id, t0)
        ) WITHOUT ROWID
        """,
        """
        CREATE TABLE trace_marks (
            session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
            at         REAL NOT NULL,
            kind       TEXT NOT NULL,
            label      TEXT NOT NULL,
            "values"   TEXT NOT NULL  -- JSON object
        )
        """,
        "CREATE INDEX trace_marks_session ON trace_marks (session_id)",
    ),
    (
        # A session driven from Python (gunctl.connect, gunctl.simulate) is its own source.
        # SQLite cannot change a CHECK in place, so the table is rebuilt as its documents
        # say (https://sqlite.org/lang_altertable.html#otheralter): a new table, the rows
        # copied, the old dropped, the new renamed. Foreign keys are off while migrating
        # (History._migrate), so the drop cascades nothing, and the children's references
        # to "sessions" find the new table once renamed.
        """
        CREATE TABLE sessions_new (
            id            INTEGER PRIMARY KEY,
            started_at    TEXT NOT NULL,
            ended_at      TEXT,
            updated_at    TEXT NOT NULL,
            device        TEXT NOT NULL,
            spec          TEXT,
            protocol      TEXT NOT NULL,
            side          TEXT,
            intensity_cap REAL,
            status        TEXT NOT NULL CHECK (status IN ('running', 'completed', 'aborted')),
            end_reason    TEXT,
            end_message   TEXT,
            planned_s     REAL,
            steps         INTEGER,
            worked_s      REAL NOT NULL DEFAULT 0,
            source        TEXT NOT NULL CHECK (source IN ('cli', 'mqtt', 'python')),
            pid           INTEGER NOT NULL,
            host          TEXT NOT NULL,
            proc_start    TEXT,
            simulated     INTEGER NOT NULL DEFAULT 0,
            time_scale    REAL NOT NULL DEFAULT 1
        )
        """,
        f"INSERT INTO sessions_new ({_SESSION_COLUMNS}) SELECT {_SESSION_COLUMNS} FROM sessions",
        "DROP TABLE sessions",
        "ALTER TABLE sessions_new RENAME TO sessions",
        "CREATE INDEX sessions_started_at ON sessions (started_at)",
        "CREATE INDEX sessions_running ON sessions (status) WHERE status = 'running'",
    ),
    (
        # Where a professional's visit was recorded from, as for a session; unknown (NULL)
        # for the visits recorded before it was kept.
        "ALTER TABLE professional_visits ADD COLUMN source TEXT "
        "CHECK (source IN ('cli', 'mqtt', 'python'))",
    ),
]


class HistoryError(StorageError):
    """The history cannot be used as asked; the message says why and what to do."""


def data_folder(path: Path) -> Path:
    """Make sure the folder that holds ``path`` exists; raise HistoryError when it cannot."""
    folder = path.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = "it is a file" if isinstance(exc, FileExistsError) else exc.strerror or str(exc)
        raise HistoryError(
            f"the data folder {folder} cannot be used ({why})",
            f"set {ENV_DIR} to a folder you can write to",
        ) from exc
    return folder


def unusable(path: Path, exc: sqlite3.Error) -> HistoryError:
    """What to tell a person whose history file SQLite will not open or write.

    A full disk must not read as a damaged file: the advice for that, moving
    the file aside, would lose the exposure ledger and the diary for nothing.
    SQLite says "disk I/O error" when even its shared-memory file cannot be
    made, so the free space is asked too.
    """
    text = str(exc)
    if _disk_full(path, exc):
        return HistoryError(
            f"the disk holding the history at {path} is full ({text}); nothing was written",
            "free some space on it and try again: the history itself is intact",
        )
    if "readonly" in text or _read_only_disk(path):
        return HistoryError(
            f"the history at {path} is read-only",
            f"make it writable, or set {ENV_DIR} to a folder you can write to "
            "(gunctl history can still list it)",
        )
    if "locked" in text:
        return HistoryError(
            f"the history at {path} is busy: another gunctl kept it locked ({text})",
            "try again in a moment",
        )
    if "unable to open" in text:
        return HistoryError(
            f"cannot open the history at {path} ({text})",
            f"check its permissions, or set {ENV_DIR} to a folder you can write to",
        )
    return HistoryError(
        f"the history at {path} is damaged ({text})",
        f"move it aside (mv {path} {path}.broken) and gunctl starts a new one",
    )


def _disk_full(path: Path, exc: sqlite3.Error) -> bool:
    name = str(getattr(exc, "sqlite_errorname", ""))
    if name == "SQLITE_FULL":
        return True
    if not name.startswith("SQLITE_IOERR"):
        return False
    try:
        return shutil.disk_usage(path.parent).free < FULL_BELOW
    except OSError:
        return False


def _read_only_disk(path: Path) -> bool:
    try:
        return bool(os.statvfs(path.parent).f_flag & os.ST_RDONLY)
    except OSError:
        return False


# -- what comes back out -------------------------------------------------------


class MuscleTime(DataModel):
    muscle: str
    side: str
    worked_s: float


class SafetyStopRecord(DataModel):
    at: float  # session clock seconds
    rule: str
    message: str
    values: dict[str, Any]
    step_index: int | None


class PainRecord(DataModel):
    at: float  # session clock seconds
    muscle: str
    side: str
    step_index: int | None
    reported_at: datetime | None  # wall clock; None in files from before it was kept


class ProfessionalVisit(DataModel):
    recorded_at: datetime  # wall clock, UTC
    note: str
    source: Source | None  # None in files from before it was kept


class SessionRecord(DataModel):
    id: int
    started_at: datetime
    ended_at: datetime | None
    device: str
    spec: str | None
    protocol: str
    side: str | None
    intensity_cap: float | None
    status: Status
    end_reason: str | None
    end_message: str | None
    planned_s: float | None
    worked_s: float
    source: Source
    simulated: bool  # the simulator, or faster than real time: kept apart from real sessions
    time_scale: float  # session seconds per real second; 1 for every real session
    host: str
    pid: int
    muscles: list[MuscleTime]
    safety_stops: list[SafetyStopRecord]
    pain_reports: list[PainRecord]
    scores: list[Score]  # the diary's answers before and after, skipped ones included


# -- where, and who is writing -------------------------------------------------


def default_path() -> Path:
    """``$GUNCTL_DATA_DIR/history.sqlite3``, else the same file in the user's data directory."""
    directory = os.environ.get(ENV_DIR)
    if not directory:
        import platformdirs

        directory = platformdirs.user_data_dir("gunctl")
    return Path(directory) / DB_NAME


def _utc(moment: datetime | None = None) -> datetime:
    """``moment`` in UTC (a naive one is taken as local time); now when None."""
    return wall_now() if moment is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    # One fixed format, so that comparing the text compares the times.
    return _utc(moment).isoformat(timespec="microseconds")


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time) of a process from ``/proc``, or None where there is none."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text.rsplit(")", 1)[-1].split()  # the command name may hold spaces
    if len(fields) < 20:
        return None
    return fields[0], fields[19]  # fields 3 and 22 of proc(5)


def _process_gone(pid: int, proc_start: str | None) -> bool:
    """True when the process ``pid`` on this host is certainly not the one that wrote a row."""
    if os.name == "nt":  # os.kill(pid, 0) would end the process there; do not guess
        return False
    if pid <= 0:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # alive, owned by someone else
    stat = _proc_stat(pid)
    if stat is None:
        return False  # alive as far as we can tell
    state, started = stat
    if state in ("Z", "X"):  # exited, not yet reaped by its parent
        return True
    return proc_start is not None and started != proc_start  # the pid was reused


_HOST = socket.gethostname()


def _own_start() -> str | None:
    stat = _proc_stat(os.getpid())
    return stat[1] if stat else None


# -- what a session in progress looks like in memory -------------------------------


@dataclass
class _Live:
    device: str
    completed: dict[Key, float] = field(default_factory=dict)  # from step_completed
    exact: dict[Key, float] = field(default_factory=dict)  # from checkpoint()
    current: Key | None = None  # the step being worked, between step_started and its end
    accum: float = 0.0  # motor time of the current step before the last pause
    running_since: float | None = None  # session clock, while the current step's clock runs
    paused: bool = False
    last_at: float = 0.0  # session clock of the last event
    ahead_s: float = 0.0  # session seconds to the next write: what a kill could lose

    def halt(self, at: float) -> None:
        if self.running_since is not None:
            self.accum += max(0.0, at - self.running_since)
            self.running_since = None

    def rows(self, at: float) -> dict[Key, float]:
        rows = dict(self.completed)
        for key, seconds in self.exact.items():
            rows[key] = max(rows.get(key, 0.0), seconds)
        if self.current is not None:
            key = self.current
            running = max(0.0, at - self.running_since) if self.running_since is not None else 0.0
            estimate = self.completed.get(key, 0.0) + self.accum + running
            # while the motor runs, count on to the next write, so a kill in between errs high
            ahead = self.ahead_s if self.running_since is not None else 0.0
            rows[key] = max(rows.get(key, 0.0), estimate) + ahead
        return rows


# -- the store -------------------------------------------------------------------


@dataclass(frozen=True)
class ExposureView:
    """One history's 48-hour exposure for real sessions, or for simulated ones."""

    history: History
    simulated: bool

    def exposure_s(self, muscle: str, side: str) -> float:
        return self.history.exposure_s(muscle, side, simulated=self.simulated)

    def pain_blocks(self) -> dict[Key, str]:
        return {
            key: f"sharp pain at {at.astimezone():%H:%M}"
            for key, at in self.history.pain_blocks(simulated=self.simulated).items()
        }

    def reserve(self, device: str, wants: Mapping[Key, Want]) -> dict[Key, float]:
        return self.history.reserve(device, wants, simulated=self.simulated)

    def release(self, device: str) -> None:
        self.history.release(device)

    def diary_refusal(self) -> DiaryVerdict | None:
        return self.history.diary_refusal(simulated=self.simulated)


class History:
    """The session history in one SQLite file; safe to share between threads.

    Opening it closes the sessions left ``running`` by processes that are gone.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        read_only: bool = False,
        diary: DiarySettings | None = None,
    ) -> None:
        """Open (or create) the history; ``read_only`` only reads a file that exists.

        ``diary`` sets the diary rules' thresholds; by default they are the
        ``GUNCTL_DIARY_*`` variables' (``gunctl.config.load_diary``), read once here.

        Raises HistoryError, saying what to do, when the file or its folder
        cannot be used (damaged, read-only, under a file, ...).
        """
        from gunctl.config import load_diary  # the settings' sources, loaded only when needed

        self.path = Path(path) if path is not None else default_path()
        self.diary_settings = diary if diary is not None else load_diary()
        self._lock = threading.RLock()
        self._live: dict[int, _Live] = {}
        self._by_device: dict[str, int] = {}
        self._proc_start = _own_start()
        self.recovered: list[int] = []
        if not read_only:
            data_folder(self.path)
        # On a read-only disk SQLite cannot make the shared-memory file a WAL reader
        # needs; nothing can change the file there, so it is read as immutable.
        frozen = "&immutable=1" if read_only and _read_only_disk(self.path) else ""
        try:
            self._db = sqlite3.connect(
                f"{self.path.resolve().as_uri()}?mode=ro{frozen}" if read_only else self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=10.0,
                uri=read_only,
            )
        except sqlite3.Error as exc:
            raise unusable(self.path, exc) from exc
        try:
            if read_only:
                self.schema_version  # noqa: B018 (reads the file: a damaged one fails here)
                return
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA synchronous = NORMAL")
            self._migrate()  # foreign keys still off: a migration may rebuild a table
            self._db.execute("PRAGMA foreign_keys = ON")
            self.recovered = self.recover()
        except sqlite3.Error as exc:
            self._db.close()
            raise unusable(self.path, exc) from exc
        except BaseException:
            self._db.close()
            raise

    # -- opening and closing -----------------------------------------------------

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> History:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One transaction, taken for writing at once so that it never has to upgrade."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                # SQLite has rolled back already after some errors (a full disk): a
                # second ROLLBACK would fail and hide the error that says what happened
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @contextlib.contextmanager
    def _diary_write(self) -> Iterator[sqlite3.Connection]:
        """A write to the diary; a failure is a HistoryError that says why (a full disk, ...).

        Whoever records a score (a prompt, MQTT, Python) tells a person, not a log.
        """
        try:
            with self._write() as db:
                yield db
        except sqlite3.Error as exc:
            raise unusable(self.path, exc) from exc

    @property
    def schema_version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT version FROM schema_version").fetchone()
        return int(row[0])

    def _migrate(self) -> None:
        with self._write() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_version "
                "(id INTEGER PRIMARY KEY CHECK (id = 1), version INTEGER NOT NULL)"
            )
            row = db.execute("SELECT version FROM schema_version").fetchone()
            current = int(row[0]) if row else 0
            if current > len(MIGRATIONS):
                raise HistoryError(
                    f"{self.path} has schema version {current}, written by a newer gunctl; "
                    f"this one reads up to version {len(MIGRATIONS)}"
                )
            for version in range(current, len(MIGRATIONS)):
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                log.debug("history_migrated", path=str(self.path), version=version + 1)
            broken = db.execute("PRAGMA foreign_key_check").fetchall()
            if broken:  # a migration lost a row others refer to: keep the file as it was
                raise HistoryError(
                    f"migrating {self.path} would break {len(broken)} references "
                    f"(the first in table {broken[0][0]}); the file is left unchanged",
                    f"keep a copy of {self.path} and report this as a bug in gunctl",
                )
            db.execute(
                "INSERT INTO schema_version (id, version) VALUES (1, ?) "
                "ON CONFLICT (id) DO UPDATE SET version = excluded.version",
                (len(MIGRATIONS),),
            )

    def recover(self) -> list[int]:
        """Close every ``running`` session whose writer on this host is gone; return their ids.

        Sessions written from another host are left alone: whether their
        writer lives cannot be told from here.
        """
        closed: list[int] = []
        with self._write() as db:
            rows = db.execute(
                "SELECT id, pid, proc_start, updated_at FROM sessions "
                "WHERE status = 'running' AND host = ?",
                (_HOST,),
            ).fetchall()
            for session_id, pid, proc_start, updated_at in rows:
                if session_id in self._live or not _process_gone(pid, proc_start):
                    continue
                message = (
                    f"the gunctl process writing this session (pid {pid} on {_HOST}) "
                    "ended before the session did"
                )
                self._close_row(db, session_id, "aborted", INTERRUPTED, message, updated_at)
                closed.append(session_id)
        for session_id in closed:
            log.warning("session_interrupted", session=session_id, path=str(self.path))
        return closed

    def _close_row(
        self,
        db: sqlite3.Connection,
        session_id: int,
        status: Status,
        reason: str | None,
        message: str | None,
        ended_at: str,
        worked_s: float | None = None,
    ) -> None:
        if worked_s is None:
            (worked_s,) = db.execute(
                "SELECT COALESCE(SUM(worked_s), 0) FROM muscle_time WHERE session_id = ?",
                (session_id,),
            ).fetchone()
        db.execute(
            "UPDATE sessions SET status = ?, end_reason = ?, end_message = ?, ended_at = ?, "
            "updated_at = ?, worked_s = ? WHERE id = ?",
            (status, reason, message, ended_at, ended_at, round(worked_s, 3), session_id),
        )

    # -- writing a session -------------------------------------------------------

    def begin(
        self,
        *,
        device: str,
        protocol: str,
        spec: str | None = None,
        side: str | None = None,
        intensity_cap: float | None = None,
        planned_s: float | None = None,
        source: Source = "cli",
        simulated: bool = False,
        time_scale: float = 1.0,
        started_at: datetime | None = None,
    ) -> int:
        """Write a ``running`` session row before the motor turns; return its id.

        Events for ``device`` then go to this session until it ends. A
        ``simulated`` session (the simulator, or any ``time_scale`` but 1)
        counts only toward other simulated sessions (see ``exposure_s``).
        """
        simulated = simulated or time_scale != 1.0
        if source not in get_args(Source):
            raise ValueError(f"source must be one of {get_args(Source)}, not {source!r}")
        with self._lock:
            previous = self._by_device.get(device)
            if previous is not None:
                self.interrupt(
                    previous, "a new session started on the device before this one ended"
                )
            started = _iso(_utc(started_at))
            with self._write() as db:
                cursor = db.execute(
                    "INSERT INTO sessions (started_at, updated_at, device, spec, protocol, side, "
                    "intensity_cap, status, planned_s, source, simulated, time_scale, pid, host, "
                    "proc_start) VALUES (?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?, ?, ?, ?)",
                    (
                        started,
                        _iso(_utc()),
                        device,
                        spec,
                        protocol,
                        side,
                        intensity_cap,
                        planned_s,
                        source,
                        int(simulated),
                        time_scale,
                        os.getpid(),
                        _HOST,
                        self._proc_start,
                    ),
                )
            session_id = cursor.lastrowid
            assert session_id is not None
            self._live[session_id] = _Live(device=device)
            self._by_device[device] = session_id
            return session_id

    def record(self, event: Event, session_id: int | None = None) -> None:
        """Apply one session event to its session and commit.

        Without ``session_id`` the event goes to the session begun on its
        device. Events after a session has ended are ignored.
        """
        with self._lock:
            if session_id is None:
                session_id = self._by_device.get(event.device)
                if session_id is None:
                    raise HistoryError(f"no session is being recorded for device {event.device!r}")
            live = self._live.get(session_id) or self._revive(session_id)
            if live is None:
                log.debug("event_after_end", session=session_id, kind=event.type)
                return
            with self._write() as db:
                self._apply(db, session_id, live, event)
            if isinstance(event, ENDING_EVENTS):
                self._forget(session_id)

    def count_ahead(self, session_id: int, seconds: float) -> None:
        """While the motor runs, write time ``seconds`` ahead: the gap to the next write."""
        with self._lock:
            live = self._live.get(session_id)
            if live is not None:
                live.ahead_s = seconds

    def checkpoint(self, session_id: int, worked: Mapping[Key, float]) -> None:
        """Write exact motor seconds per (muscle, side) so far, as the session counts them."""
        with self._lock:
            live = self._live.get(session_id)
            if live is None:
                return
            for key, seconds in worked.items():
                live.exact[key] = max(live.exact.get(key, 0.0), seconds)
            with self._write() as db:
                self._save_rows(db, session_id, live.rows(live.last_at))

    def interrupt(self, session_id: int, message: str) -> None:
        """Close a session this process was writing as aborted, ``interrupted``."""
        with self._lock:
            live = self._live.get(session_id) or self._revive(session_id)
            if live is None:
                return
            with self._write() as db:
                self._save_rows(db, session_id, live.rows(live.last_at))
                self._close_row(db, session_id, "aborted", INTERRUPTED, message, _iso(_utc()))
            self._forget(session_id)

    def _revive(self, session_id: int) -> _Live | None:
        """Pick up a running session begun by another History in this process."""
        row = self._db.execute(
            "SELECT device, status FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        if row is None:
            raise HistoryError(f"there is no session {session_id}")
        device, status = row
        if status != "running":
            return None
        live = _Live(device=device)
        for muscle, side, seconds in self._db.execute(
            "SELECT muscle, side, worked_s FROM muscle_time WHERE session_id = ?", (session_id,)
        ):
            live.completed[(muscle, side)] = seconds
        self._live[session_id] = live
        self._by_device.setdefault(device, session_id)
        return live

    def _forget(self, session_id: int) -> None:
        live = self._live.pop(session_id, None)
        if live is not None and self._by_device.get(live.device) == session_id:
            del self._by_device[live.device]

    def _apply(self, db: sqlite3.Connection, session_id: int, live: _Live, event: Event) -> None:
        at = live.last_at = event.at
        match event:
            case SessionStarted():
                db.execute(
                    "UPDATE sessions SET protocol = ?, planned_s = ?, steps = ? WHERE id = ?",
                    (event.protocol, event.planned_s, event.steps, session_id),
                )
            case StepStarted():
                live.halt(at)
                self._mark(
                    db,
                    session_id,
                    at,
                    "step",
                    f"{event.step.muscle} {event.step.side}",
                    {
                        "index": event.step.index,
                        "ppm": event.step.ppm,
                        "force_cap_n": event.step.force_cap_n,
                    },
                )
                live.current = (event.step.muscle, event.step.side)
                live.accum = 0.0
                live.running_since = None if live.paused else at
            case HeadChangeRequired():
                live.halt(at)
                live.current = None
            case Paused():
                live.halt(at)
                live.paused = True
            case Resumed():
                live.paused = False
                if live.current is not None and live.running_since is None:
                    live.running_since = at
            case SafetyStop():
                live.halt(at)  # the motor is stopped
                db.execute(
                    'INSERT INTO safety_stops (session_id, at, rule, message, "values", '
                    "step_index) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        session_id,
                        at,
                        event.rule,
                        event.message,
                        json.dumps(event.values, default=str),
                        event.step_index,
                    ),
                )
            case PainReported():
                live.halt(at)
                db.execute(
                    "INSERT INTO pain_reports (session_id, at, muscle, side, step_index, "
                    "reported_at) VALUES (?, ?, ?, ?, ?, ?)",
                    (session_id, at, event.muscle, event.side, event.step_index, _iso(_utc())),
                )
            case StepCompleted():
                key = (event.muscle, event.side)
                live.completed[key] = live.completed.get(key, 0.0) + event.worked_s
                live.current, live.accum, live.running_since = None, 0.0, None
            case SessionCompleted() | SessionAborted():
                live.halt(at)
                ending = event.reason if isinstance(event, SessionAborted) else "completed"
                self._mark(db, session_id, at, "end", ending, {})
                rows = dict(live.completed)
                for key, seconds in live.exact.items():
                    rows[key] = max(rows.get(key, 0.0), seconds)
                if isinstance(event, SessionAborted) and live.current is not None:
                    # The step in progress never completed: the session's own total
                    # says exactly how much of it the motor ran.
                    rest = event.worked_s - sum(live.completed.values())
                    key = live.current
                    rows[key] = max(rows.get(key, 0.0), live.completed.get(key, 0.0) + rest)
                self._save_rows(db, session_id, rows)
                if isinstance(event, SessionCompleted):
                    status: Status = "completed"
                    reason, message = None, None
                else:
                    status, reason, message = "aborted", event.reason, event.message
                now = _iso(_utc())
                self._close_row(db, session_id, status, reason, message, now, event.worked_s)
                return
            case SafetyWarning():
                self._mark(db, session_id, at, "warning", event.rule, event.values)
            case _:
                pass  # cues move time on, nothing more
        self._save_rows(db, session_id, live.rows(at))

    def _mark(
        self,
        db: sqlite3.Connection,
        session_id: int,
        at: float,
        kind: str,
        label: str,
        values: Mapping[str, Any],
    ) -> None:
        db.execute(
            'INSERT INTO trace_marks (session_id, at, kind, label, "values") '
            "VALUES (?, ?, ?, ?, ?)",
            (session_id, at, kind, label, json.dumps(values, default=str)),
        )

    def _save_rows(
        self, db: sqlite3.Connection, session_id: int, rows: Mapping[Key, float]
    ) -> None:
        db.executemany(
            "INSERT INTO muscle_time (session_id, muscle, side, worked_s) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (session_id, muscle, side) DO UPDATE SET worked_s = excluded.worked_s",
            [(session_id, m, s, round(v, 3)) for (m, s), v in rows.items()],
        )
        db.execute(
            "UPDATE sessions SET updated_at = ?, worked_s = "
            "(SELECT COALESCE(SUM(worked_s), 0) FROM muscle_time WHERE session_id = ?) "
            "WHERE id = ?",
            (_iso(_utc()), session_id, session_id),
        )

    # -- reading -----------------------------------------------------------------

    def exposure_s(
        self, muscle: str, side: str, now: datetime | None = None, *, simulated: bool = False
    ) -> float:
        """Seconds ``muscle`` on ``side`` was worked in sessions begun in the 48 h up to ``now``.

        Real sessions only, or with ``simulated`` the simulator's own: a demo
        never uses up a person's time, and a person's time never blocks a demo.
        The simulator counts its sessions run in real time only: a demo faster
        than real time is a demonstration, so any number of them in a row run.
        """
        end = _utc(now)
        with self._lock:
            (total,) = self._db.execute(
                "SELECT COALESCE(SUM(m.worked_s), 0) FROM muscle_time AS m "
                "JOIN sessions AS s ON s.id = m.session_id "
                "WHERE m.muscle = ? AND m.side = ? AND s.simulated = ? AND s.time_scale = 1 "
                "AND s.started_at >= ? AND s.started_at <= ?",
                (muscle, side, int(simulated), _iso(end - EXPOSURE_WINDOW), _iso(end)),
            ).fetchone()
        return float(total)

    def reserve(
        self, device: str, wants: Mapping[Key, Want], *, simulated: bool = False
    ) -> dict[Key, float]:
        """Reserve a plan's time on each muscle side for ``device``, or refuse it whole.

        This is the exposure ledger every session on the machine shares, CLI
        runs in their own processes and every gun of a daemon alike. In one
        write transaction (SQLite serialises them across processes), each side's
        prior exposure is read, counting what other running sessions have
        reserved (in place of the time they have recorded so far, so nothing
        counts twice); if any side's prior and planned time pass its cap,
        ``ExposureRefused`` is raised and nothing is reserved. Otherwise the
        planned time is reserved until ``release``, so the sessions running
        at once can never add up past a cap. Returns the prior exposure of
        each side, which the running session's own time is added to.
        """
        holder = (_HOST, os.getpid(), device)
        start = _iso(_utc() - EXPOSURE_WINDOW)
        prior: dict[Key, float] = {}
        with self._write() as db:
            db.execute("DELETE FROM reservations WHERE host = ? AND pid = ? AND device = ?", holder)
            holders = db.execute(
                "SELECT DISTINCT pid, proc_start FROM reservations WHERE host = ?", (_HOST,)
            ).fetchall()
            for pid, proc_start in holders:  # a process that died holding a booking: its
                if _process_gone(pid, proc_start):  # recorded time counts in its place
                    db.execute("DELETE FROM reservations WHERE host = ? AND pid = ?", (_HOST, pid))
            for muscle, side in wants:
                (recorded,) = db.execute(
                    "SELECT COALESCE(SUM(m.worked_s), 0) FROM muscle_time AS m "
                    "JOIN sessions AS s ON s.id = m.session_id "
                    "WHERE m.muscle = ? AND m.side = ? AND s.simulated = ? "
                    "AND s.time_scale = 1 AND s.started_at >= ? "
                    "AND NOT (s.status = 'running' AND EXISTS (SELECT 1 FROM reservations AS r "
                    "WHERE r.host = s.host AND r.pid = s.pid AND r.device = s.device "
                    "AND r.muscle = m.muscle AND r.side = m.side))",
                    (muscle, side, int(simulated), start),
                ).fetchone()
                (reserved,) = db.execute(
                    "SELECT COALESCE(SUM(seconds), 0) FROM reservations "
                    "WHERE muscle = ? AND side = ? AND simulated = ?",
                    (muscle, side, int(simulated)),
                ).fetchone()
                prior[(muscle, side)] = float(recorded) + float(reserved)
            checks = [
                ExposureCheck(muscle=m, side=s, prior_s=prior[(m, s)], **want.model_dump())
                for (m, s), want in wants.items()
            ]
            over = [c for c in checks if c.over]
            if over:
                raise ExposureRefused(over)
            made_at, pid, kind = _iso(_utc()), os.getpid(), int(simulated)
            db.executemany(
                "INSERT INTO reservations (host, pid, proc_start, device, muscle, side, "
                "simulated, seconds, made_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (_HOST, pid, self._proc_start, device, m, s, kind, w.planned_s, made_at)
                    for (m, s), w in wants.items()
                ],
            )
        return prior

    def release(self, device: str) -> None:
        """Give back what ``device``'s session reserved: its recorded time counts instead."""
        with self._write() as db:
            db.execute(
                "DELETE FROM reservations WHERE host = ? AND pid = ? AND device = ?",
                (_HOST, os.getpid(), device),
            )

    def pain_blocks(
        self, *, simulated: bool = False, now: datetime | None = None
    ) -> dict[Key, datetime]:
        """Muscle sides with a pain stop today, each with the time of its latest one.

        A pain stop blocks its muscle side until the next calendar day in local
        time (midnight of the system's time zone, after ``now``). Real
        sessions block real ones; simulated sessions, at any time scale, block
        simulated ones. Reports from before their time was kept count from
        the start of their session.
        """
        today = _utc(now).astimezone().date()
        midnight = datetime.combine(today, dtime()).astimezone()  # local, with that day's offset
        with self._lock:
            rows = self._db.execute(
                "SELECT p.muscle, p.side, MAX(COALESCE(p.reported_at, s.started_at)) "
                "FROM pain_reports AS p JOIN sessions AS s ON s.id = p.session_id "
                "WHERE s.simulated = ? AND COALESCE(p.reported_at, s.started_at) >= ? "
                "GROUP BY p.muscle, p.side",
                (int(simulated), _iso(midnight)),
            ).fetchall()
        return {(m, s): datetime.fromisoformat(at) for m, s, at in rows}

    # -- the symptom diary ---------------------------------------------------------

    def record_score(
        self,
        moment: Moment,
        pain: int | None = None,
        reach: Reach | str | None = None,
        *,
        session_id: int | None = None,
        simulated: bool = False,
        at: datetime | None = None,
    ) -> int:
        """Record a pain score (0-10) and where the pain reaches, before or after a session.

        Neither given means the person skipped the question, which is kept as
        such. With ``session_id`` the score belongs to that session (whose kind,
        real or simulated, it takes) and replaces one given for the same moment;
        a before-score given ahead of the session it is for is attached with
        ``attach_score`` once that session has begun. Returns the score's id.
        Raises ScoreError, saying what is allowed, for a bad score or reach.
        """
        if moment not in ("before", "after"):
            raise ScoreError(f"a score is 'before' or 'after' a session, not {moment!r}")
        if pain is not None and (isinstance(pain, bool) or pain not in range(11)):
            raise ScoreError(f"a pain score is a whole number from 0 to 10, not {pain!r}")
        if reach is not None and reach not in set(Reach):
            raise ScoreError(f"the pain reaches {', '.join(r.value for r in Reach)}, not {reach!r}")
        where = None if reach is None else Reach(reach).value
        skipped = pain is None and where is None
        with self._diary_write() as db:
            if session_id is not None:
                row = db.execute(
                    "SELECT simulated FROM sessions WHERE id = ?", (session_id,)
                ).fetchone()
                if row is None:
                    raise HistoryError(f"there is no session {session_id}")
                simulated = bool(row[0])
                db.execute(
                    "DELETE FROM scores WHERE session_id = ? AND moment = ?", (session_id, moment)
                )
            cursor = db.execute(
                "INSERT INTO scores (recorded_at, simulated, session_id, moment, pain, reach, "
                "skipped) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_iso(_utc(at)), int(simulated), session_id, moment, pain, where, int(skipped)),
            )
        assert cursor.lastrowid is not None
        log.info("score_recorded", moment=moment, pain=pain, reach=where, session=session_id)
        return cursor.lastrowid

    def attach_score(self, score_id: int, session_id: int) -> None:
        """Tie a before-score given ahead of its session to that session, once it has begun."""
        with self._diary_write() as db:
            db.execute(
                "DELETE FROM scores WHERE session_id = ? AND moment = "
                "(SELECT moment FROM scores WHERE id = ?) AND id != ?",
                (session_id, score_id, score_id),
            )
            db.execute("UPDATE scores SET session_id = ? WHERE id = ?", (session_id, score_id))

    def record_professional(
        self,
        note: str = "",
        *,
        simulated: bool = False,
        source: Source = "cli",
        at: datetime | None = None,
    ) -> None:
        """Record that a doctor or physiotherapist has seen the person: a new baseline.

        The diary rules then read only the scores and sessions after it, so a
        refusal they made is lifted. ``source`` says where it was recorded
        from, as a session's does.
        """
        if source not in get_args(Source):
            raise ValueError(f"source must be one of {get_args(Source)}, not {source!r}")
        with self._diary_write() as db:
            db.execute(
                "INSERT INTO professional_visits (recorded_at, simulated, note, source) "
                "VALUES (?, ?, ?, ?)",
                (_iso(_utc(at)), int(simulated), note, source),
            )
        log.info("professional_visit_recorded", simulated=simulated, source=source)

    def last_professional(self, *, simulated: bool = False) -> ProfessionalVisit | None:
        """The latest recorded visit to a professional: the diary rules' baseline."""
        with self._lock:
            row = self._db.execute(
                "SELECT recorded_at, note, source FROM professional_visits WHERE simulated = ? "
                "ORDER BY recorded_at DESC, id DESC LIMIT 1",
                (int(simulated),),
            ).fetchone()
        if row is None:
            return None
        at, note, source = row
        return ProfessionalVisit(recorded_at=datetime.fromisoformat(at), note=note, source=source)

    def _scores(self, where: str, params: Sequence[Any]) -> list[Score]:
        return [
            Score(
                recorded_at=datetime.fromisoformat(at),
                moment=moment,
                pain=pain,
                reach=reach,
                skipped=bool(skipped),
                session_id=sid,
            )
            for at, moment, pain, reach, skipped, sid in self._db.execute(
                "SELECT recorded_at, moment, pain, reach, skipped, session_id FROM scores "
                f"WHERE {where} ORDER BY recorded_at, id",
                params,
            )
        ]

    def diary(
        self, *, simulated: bool = False, since: datetime | None = None, now: datetime | None = None
    ) -> DiaryData:
        """The scores and sessions that ran, from ``since`` (else the last visit) to ``now``.

        Only real sessions at real time count, or only simulated ones with
        ``simulated``: a demo never sends a person to a doctor.
        """
        end = _utc(now)
        with self._lock:
            (visit,) = self._db.execute(
                "SELECT MAX(recorded_at) FROM professional_visits "
                "WHERE simulated = ? AND recorded_at <= ?",
                (int(simulated), _iso(end)),
            ).fetchone()
            baseline = datetime.fromisoformat(visit) if visit else None
            start = _iso(since) if since is not None else (visit or "")
            scores = self._scores(
                "simulated = ? AND recorded_at > ? AND recorded_at <= ?",
                (int(simulated), start, _iso(end)),
            )
            sessions = [
                datetime.fromisoformat(at)
                for (at,) in self._db.execute(
                    "SELECT started_at FROM sessions WHERE simulated = ? AND time_scale = 1 "
                    "AND worked_s > 0 AND started_at > ? AND started_at <= ? ORDER BY started_at",
                    (int(simulated), start, _iso(end)),
                )
            ]
        return DiaryData(now=end, baseline=baseline, scores=scores, sessions=sessions)

    def diary_refusal(
        self,
        *,
        simulated: bool = False,
        settings: DiarySettings | None = None,
        rules: dict[str, DiaryRule] | None = None,
        now: datetime | None = None,
    ) -> DiaryVerdict | None:
        """The diary rule that refuses the next session, with its data, or None.

        ``settings`` default to the history's own (``diary_settings``);
        ``rules`` to every diary rule (tests leave one out).
        """
        data = self.diary(simulated=simulated, now=now)
        return first_refusal(data, settings or self.diary_settings, rules)

    def weeks(
        self, count: int = 8, *, simulated: bool = False, now: datetime | None = None
    ) -> list[Week]:
        """The diary by seven whole days, the last ``count`` of them ending today, oldest first."""
        end = days_end(_utc(now)).astimezone(UTC)
        start = end - timedelta(weeks=count)
        records = self.sessions(start, simulated=simulated)
        worked = [
            (r.started_at, {f"{m.muscle} {m.side}": m.worked_s for m in r.muscles})
            for r in records
            if r.started_at <= end
        ]
        return weekly(
            worked, self.diary(simulated=simulated, since=start, now=end).scores, end, count
        )

    def diary_summary(
        self, *, simulated: bool = False, now: datetime | None = None
    ) -> DiarySummary:
        """The latest scores, the last seven days' massage (today's included), any refusal."""
        (week,) = self.weeks(1, simulated=simulated, now=now)
        with self._lock:
            latest = {
                moment: self._scores(
                    "simulated = ? AND moment = ? AND skipped = 0 AND id = (SELECT id FROM "
                    "scores WHERE simulated = ? AND moment = ? AND skipped = 0 "
                    "ORDER BY recorded_at DESC, id DESC LIMIT 1)",
                    (int(simulated), moment, int(simulated), moment),
                )
                for moment in ("before", "after")
            }
        verdict = self.diary_refusal(simulated=simulated, now=now)
        return DiarySummary(
            last_before=next(iter(latest["before"]), None),
            last_after=next(iter(latest["after"]), None),
            minutes_this_week=round(week.total_minutes, 1),
            sessions_this_week=week.sessions,
            refusal=None
            if verdict is None
            else Refusal(rule=verdict.rule, message=verdict.message, advice=verdict.advice),
        )

    # -- telemetry traces ------------------------------------------------------------

    def write_trace(self, session_id: int, samples: list[Sample]) -> None:
        """Append one chunk of a session's telemetry trace (see gunctl.store.trace)."""
        if not samples:
            return
        t0, data = encode(samples)
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO trace_chunks (session_id, t0, data) VALUES (?, ?, ?)",
                (session_id, t0, data),
            )

    def trace(self, session_id: int) -> Trace:
        """A session's samples, and its step starts, warnings, stops, pain and end as marks."""
        with self._lock:
            chunks = self._db.execute(
                "SELECT t0, data FROM trace_chunks WHERE session_id = ? ORDER BY t0",
                (session_id,),
            ).fetchall()
            marks = [
                Mark(at=at, kind=kind, label=label, values=json.loads(values))
                for at, kind, label, values in self._db.execute(
                    'SELECT at, kind, label, "values" FROM trace_marks WHERE session_id = ? '
                    "ORDER BY rowid",
                    (session_id,),
                )
            ]
            record = self.session(session_id)
        if record is None:
            raise HistoryError(f"there is no session {session_id}")
        marks += [
            Mark(at=s.at, kind="safety_stop", label=s.rule, values=s.values)
            for s in record.safety_stops
        ]
        marks += [
            Mark(at=p.at, kind="pain", label=f"{p.muscle} {p.side}") for p in record.pain_reports
        ]
        order = ("step", "warning", "pain", "safety_stop", "end")  # at one moment, as they happen
        marks.sort(key=lambda m: (m.at, order.index(m.kind)))
        return Trace(samples=decode(chunks), marks=marks)

    def exposure(self, *, simulated: bool) -> ExposureView:
        """The exposure a Supervisor reads: real sessions', or simulated sessions'."""
        return ExposureView(self, simulated)

    def sessions(
        self, since: datetime | None = None, *, simulated: bool | None = None
    ) -> list[SessionRecord]:
        """Every session begun at or after ``since`` (all when None), oldest first.

        ``simulated`` True or False keeps only simulated or only real sessions.
        """
        clauses: list[str] = []
        params: list[Any] = []
        if since is not None:
            clauses.append("started_at >= ?")
            params.append(_iso(since))
        if simulated is not None:
            clauses.append("simulated = ?")
            params.append(int(simulated))
        where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._lock:
            return self._records(f"SELECT * FROM sessions{where} ORDER BY started_at, id", params)

    def session(self, session_id: int) -> SessionRecord | None:
        with self._lock:
            found = self._records("SELECT * FROM sessions WHERE id = ?", (session_id,))
        return found[0] if found else None

    def _records(self, query: str, params: Sequence[Any]) -> list[SessionRecord]:
        cursor = self._db.execute(query, params)
        names = [d[0] for d in cursor.description]
        rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        if not rows:
            return []
        ids = [row["id"] for row in rows]
        marks = ",".join("?" * len(ids))
        muscles: dict[int, list[MuscleTime]] = {i: [] for i in ids}
        for sid, muscle, side, seconds in self._db.execute(
            f"SELECT session_id, muscle, side, worked_s FROM muscle_time "
            f"WHERE session_id IN ({marks}) ORDER BY rowid",
            ids,
        ):
            muscles[sid].append(MuscleTime(muscle=muscle, side=side, worked_s=seconds))
        stops: dict[int, list[SafetyStopRecord]] = {i: [] for i in ids}
        for sid, at, rule, message, values, step in self._db.execute(
            f'SELECT session_id, at, rule, message, "values", step_index FROM safety_stops '
            f"WHERE session_id IN ({marks}) ORDER BY id",
            ids,
        ):
            stops[sid].append(
                SafetyStopRecord(
                    at=at, rule=rule, message=message, values=json.loads(values), step_index=step
                )
            )
        pains: dict[int, list[PainRecord]] = {i: [] for i in ids}
        for sid, at, muscle, side, step, reported in self._db.execute(
            f"SELECT session_id, at, muscle, side, step_index, reported_at FROM pain_reports "
            f"WHERE session_id IN ({marks}) ORDER BY id",
            ids,
        ):
            pains[sid].append(
                PainRecord(
                    at=at,
                    muscle=muscle,
                    side=side,
                    step_index=step,
                    reported_at=datetime.fromisoformat(reported) if reported else None,
                )
            )
        scores: dict[int, list[Score]] = {i: [] for i in ids}
        for score in self._scores(f"session_id IN ({marks})", ids):
            assert score.session_id is not None
            scores[score.session_id].append(score)
        return [
            SessionRecord(
                id=row["id"],
                started_at=datetime.fromisoformat(row["started_at"]),
                ended_at=datetime.fromisoformat(row["ended_at"]) if row["ended_at"] else None,
                device=row["device"],
                spec=row["spec"],
                protocol=row["protocol"],
                side=row["side"],
                intensity_cap=row["intensity_cap"],
                status=row["status"],
                end_reason=row["end_reason"],
                end_message=row["end_message"],
                planned_s=row["planned_s"],
                worked_s=row["worked_s"],
                source=row["source"],
                simulated=bool(row["simulated"]),
                time_scale=row["time_scale"],
                host=row["host"],
                pid=row["pid"],
                muscles=muscles[row["id"]],
                safety_stops=stops[row["id"]],
                pain_reports=pains[row["id"]],
                scores=scores[row["id"]],
            )
            for row in rows
        ]

    def export_csv(
        self, file: IO[str], since: datetime | None = None, *, simulated: bool | None = None
    ) -> int:
        """Write one CSV row per session and muscle side (one row for a session with none).

        Returns the number of rows written, the header aside.
        """
        writer = csv.writer(file)
        writer.writerow(CSV_COLUMNS)
        count = 0
        for record in self.sessions(since, simulated=simulated):
            common = [
                record.id,
                record.started_at.isoformat(),
                record.ended_at.isoformat() if record.ended_at else "",
                record.device,
                record.spec or "",
                record.protocol,
                record.side or "",
                "" if record.intensity_cap is None else record.intensity_cap,
                record.status,
                record.end_reason or "",
                record.end_message or "",
                "" if record.planned_s is None else record.planned_s,
                record.worked_s,
                record.source,
                int(record.simulated),
                len(record.safety_stops),
                len(record.pain_reports),
                *_score_cells(record, "before"),
                *_score_cells(record, "after"),
            ]
            muscles: list[MuscleTime | None] = [*record.muscles] or [None]
            for muscle in muscles:
                if muscle is None:
                    writer.writerow([*common, "", "", ""])
                else:
                    writer.writerow([*common, muscle.muscle, muscle.side, muscle.worked_s])
                count += 1
        return count


def _score_cells(record: SessionRecord, moment: Moment) -> tuple[str | int, str]:
    """The pain and reach cells of one score: empty when not asked, "skipped" when skipped."""
    for score in record.scores:
        if score.moment == moment:
            if score.skipped:
                return "skipped", "skipped"
            return ("" if score.pain is None else score.pain), (score.reach or "")
    return "", ""


CSV_COLUMNS = (
    "session_id",
    "started_at",
    "ended_at",
    "device",
    "spec",
    "protocol",
    "session_side",
    "intensity_cap",
    "status",
    "end_reason",
    "end_message",
    "planned_s",
    "session_worked_s",
    "source",
    "simulated",
    "safety_stops",
    "pain_reports",
    "pain_before",
    "reach_before",
    "pain_after",
    "reach_after",
    "muscle",
    "side",
    "muscle_worked_s",
)


# -- following a session on the bus -----------------------------------------------


async def follow(
    history: History,
    subscription: Subscription,
    session_id: int,
    *,
    progress: Callable[[], Mapping[Key, float]] | None = None,
    sample: Callable[[], Sample] | None = None,
    every_s: float = CHECKPOINT_S,
    scale: float = 1.0,
) -> SessionRecord | None:
    """Record the session's events from ``subscription`` until it ends; return its record.

    Subscribe before the session starts so that no event is missed. Writes run
    in a worker thread, so neither the publisher nor the control loop waits for
    the disk; a write that fails is logged and the session goes on. Events from
    other devices on the same bus are passed over. ``progress``, when given,
    returns the session's exact motor seconds per (muscle, side) (the
    Supervisor's ``session.worked``) and is checkpointed every ``every_s``
    seconds, so that a crash loses at most that much time. If the events stop
    before the session ends (the bus closed, or this task was cancelled), the
    session is closed as interrupted. ``sample``, when given, reads the
    telemetry for the session's trace, ``TRACE_HZ`` times a second of session
    time, written a chunk at a time. The subscription is closed on return.
    """
    record = await asyncio.to_thread(history.session, session_id)
    if record is None:
        raise HistoryError(f"there is no session {session_id}")
    device = record.device
    if progress is not None:  # session seconds between checkpoints: what a kill could lose
        await asyncio.to_thread(history.count_ahead, session_id, every_s * scale)
    ticker = (
        asyncio.create_task(_checkpoints(history, session_id, progress, every_s))
        if progress is not None
        else None
    )
    tracer = _Tracer(history, session_id, sample, scale) if sample is not None else None
    ended = False
    try:
        async for event in subscription:
            if event.device != device:
                continue
            try:
                await asyncio.to_thread(history.record, event, session_id)
            except (sqlite3.Error, HistoryError) as exc:
                log.error(
                    "history_write_failed", session=session_id, kind=event.type, error=str(exc)
                )
            if isinstance(event, ENDING_EVENTS):
                ended = True
                break
    finally:
        subscription.close()
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        if tracer is not None:
            await tracer.close()
        if subscription.dropped:
            log.warning("history_missed_events", session=session_id, dropped=subscription.dropped)
        if not ended:
            with contextlib.suppress(sqlite3.Error):
                await asyncio.to_thread(
                    history.interrupt, session_id, "the session's events stopped before it ended"
                )
    return await asyncio.to_thread(history.session, session_id)


async def _checkpoints(
    history: History,
    session_id: int,
    progress: Callable[[], Mapping[Key, float]],
    every_s: float,
) -> None:
    while True:
        await asyncio.sleep(every_s)
        try:
            worked = dict(progress())
            await asyncio.to_thread(history.checkpoint, session_id, worked)
        except (sqlite3.Error, HistoryError) as exc:
            log.error("history_checkpoint_failed", session=session_id, error=str(exc))


class _Tracer:
    """Samples a session's telemetry ``TRACE_HZ`` times a second of session time.

    The samples are taken on a metronome, whose deadlines are absolute: a
    wake-up made late by a busy host costs that one sample its timing, not
    every later sample a share of its period, as a loop of sleeps would (on a
    loaded machine, at a high time scale, such a loop lost a fifth of a
    session's samples). Full chunks are written
    by tasks of their own, so a slow disk holds no sample back either.
    """

    def __init__(
        self, history: History, session_id: int, sample: Callable[[], Sample], scale: float
    ) -> None:
        self._history = history
        self._session_id = session_id
        self._sample = sample
        self._samples: list[Sample] = []
        self._writes: set[asyncio.Task[None]] = set()
        self._metronome = Clock(scale).metronome(1 / TRACE_HZ)
        self._metronome.join(self)

    def beat(self, deadline: float) -> None:
        self._samples.append(self._sample())
        if len(self._samples) >= CHUNK_SAMPLES:
            self._write()

    def _write(self) -> None:
        chunk, self._samples = self._samples, []
        task = asyncio.create_task(self._written(chunk))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _written(self, chunk: list[Sample]) -> None:
        try:
            await asyncio.to_thread(self._history.write_trace, self._session_id, chunk)
        except (sqlite3.Error, HistoryError) as exc:
            log.error("history_trace_failed", session=self._session_id, error=str(exc))

    async def close(self) -> None:
        """Stop sampling and write what is left; returns once every chunk is written."""
        self._metronome.leave(self)
        if self._samples:
            self._write()
        await asyncio.gather(*self._writes)
