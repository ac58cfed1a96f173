"""What the telemetry traces cost: bytes per session-minute, and ``gunctl history`` with 1,000.

Two histories of the same ``--sessions`` ten-minute sessions (four muscle
sides each), one with a trace, scores and marks per session as a real
session writes them (``History.write_trace`` a chunk at a time, 4 Hz), one
without: the baseline, measured in the same run. Reported:

- the trace's bytes per session-minute: the packed samples alone, and the
  growth of the SQLite file (pages, indexes and all) over the baseline's;
  beside them the same samples stored the plain way, one row of four REALs
  per sample, for scale;
- the time to list every session: ``History.sessions()`` in process, and
  ``gunctl history`` and ``gunctl history --json`` as a person runs them
  (process start included), each with and without the diary's data.

    python -m bench.trace [--sessions 1000] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.report import report
from gunctl.clock import wall_now
from gunctl.control.events import SessionCompleted, StepInfo, StepStarted
from gunctl.logs import configure
from gunctl.store.history import History
from gunctl.store.trace import CHUNK_SAMPLES, TRACE_HZ, Sample

MINUTES = 10.0
SIDES = [
    ("gluteus-maximus", "left"),
    ("gluteus-medius", "left"),
    ("piriformis", "left"),
    ("hamstrings", "left"),
]
GUNCTL = str(Path(sys.executable).with_name("gunctl"))


def samples(rng: random.Random) -> list[Sample]:
    """Ten minutes of telemetry as the simulator gives it: a speed, a noisy force, warming."""
    count = int(MINUTES * 60 * TRACE_HZ)
    return [
        Sample(
            at=i / TRACE_HZ,
            speed_ppm=1800 + rng.gauss(0, 30),
            force_n=max(0.0, 18 + 4 * math.sin(i / 40) + rng.gauss(0, 1)),
            temperature_c=25 + 8 * i / count,
        )
        for i in range(count)
    ]


def fill(path: Path, sessions: int, *, diary: bool) -> float:
    """``sessions`` finished sessions, a day apart back from now; seconds of trace data written."""
    rng = random.Random(1)
    now = wall_now()
    payload = 0
    with History(path) as store:
        for n in range(sessions):
            at = now - timedelta(days=sessions - n)
            sid = store.begin(device="gun", protocol="glute", started_at=at)
            store.checkpoint(sid, {side: MINUTES * 60 / len(SIDES) for side in SIDES})
            if diary:
                store.record_score("before", rng.randint(2, 7), "thigh", session_id=sid, at=at)
                for index, (muscle, side) in enumerate(SIDES):
                    info = StepInfo(
                        index=index, muscle=muscle, side=side, head="ball", hold_s=150,
                        ppm=1800, placement="-", force_cap_n=60.0,
                    )  # fmt: skip
                    store.record(StepStarted(at=index * 150.0, device="gun", step=info), sid)
                trace = samples(rng)
                for i in range(0, len(trace), CHUNK_SAMPLES):
                    store.write_trace(sid, trace[i : i + CHUNK_SAMPLES])
                payload += len(trace) * 8
            store.record(SessionCompleted(at=MINUTES * 60, device="gun", worked_s=600.0), sid)
            if diary:
                store.record_score("after", rng.randint(1, 6), session_id=sid, at=at)
        store._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return payload


def plain_bytes(path: Path, sessions: int) -> int:
    """The same samples one row each (session, time, speed, force, temperature as REALs)."""
    rng = random.Random(1)
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE samples (session_id INTEGER, at REAL, speed REAL, force REAL, temp REAL)"
        )
        db.execute("CREATE INDEX samples_session ON samples (session_id)")
        for n in range(sessions):
            db.executemany(
                "INSERT INTO samples VALUES (?, ?, ?, ?, ?)",
                [(n, s.at, s.speed_ppm, s.force_n, s.temperature_c) for s in samples(rng)],
            )
    return path.stat().st_size


def timed(repeats: int, action: Any) -> float:
    """The median of ``repeats`` runs of ``action``, in milliseconds."""
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        action()
        runs.append(time.perf_counter() - began)
    return round(statistics.median(runs) * 1000, 1)


def listing(folder: Path, repeats: int) -> dict[str, float]:
    env = {**os.environ, "GUNCTL_DATA_DIR": str(folder), "COLUMNS": "120"}

    def in_process() -> None:
        with History(folder / "history.sqlite3") as store:
            assert store.sessions()

    def command(*args: str) -> Any:
        return lambda: subprocess.run(
            [GUNCTL, "history", *args], env=env, check=True, capture_output=True
        )

    return {
        "History.sessions() ms": timed(repeats, in_process),
        "gunctl history ms": timed(repeats, command()),
        "gunctl history --json ms": timed(repeats, command("--json")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    configure(json=False, level="warning")
    with tempfile.TemporaryDirectory(prefix="gunctl-bench-trace-") as tmp:
        root = Path(tmp)
        plain, traced = root / "plain", root / "traced"
        plain.mkdir()
        traced.mkdir()
        began = time.perf_counter()
        fill(plain / "history.sqlite3", args.sessions, diary=False)
        payload = fill(traced / "history.sqlite3", args.sessions, diary=True)
        filled_s = time.perf_counter() - began
        minutes = args.sessions * MINUTES
        base_size = (plain / "history.sqlite3").stat().st_size
        traced_size = (traced / "history.sqlite3").stat().st_size
        one_row = plain_bytes(root / "rows.sqlite3", args.sessions)
        rows: list[dict[str, Any]] = [
            {
                "measure": "trace payload, bytes per session-minute",
                "value": round(payload / minutes, 1),
            },
            {
                "measure": "file growth over the baseline, bytes per session-minute",
                "value": round((traced_size - base_size) / minutes, 1),
            },
            {
                "measure": "one row per sample (for scale), bytes per session-minute",
                "value": round(one_row / minutes, 1),
            },
            {"measure": "history file without traces, MB", "value": round(base_size / 1e6, 2)},
            {"measure": "history file with traces, MB", "value": round(traced_size / 1e6, 2)},
        ]
        for label, folder in (("baseline", plain), ("with traces and scores", traced)):
            for measure, value in listing(folder, args.repeats).items():
                rows.append({"measure": f"{measure}, {label}", "value": value})
    report(
        "trace",
        f"Traces: {args.sessions} sessions of {MINUTES:g} min at {TRACE_HZ:g} Hz",
        rows,
        {"sessions": args.sessions, "repeats": args.repeats, "fill_s": round(filled_s, 1)},
    )


if __name__ == "__main__":
    main()
