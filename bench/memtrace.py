"""Where ``gunctl serve`` keeps memory: tracemalloc snapshots of a daemon in this process.

The soak (:mod:`bench.soak`) says whether memory grows, from outside, and
needs an hour to see a few megabytes. This says where, in minutes: it runs
``gunctl serve --sim N`` in-process against a private Mosquitto, busier than
at home if asked (more guns, faster telemetry and state), lets it settle,
then takes a tracemalloc snapshot every ``--every`` seconds (after a full
collection) and prints, for each interval, the daemon's RSS beside the live
Python memory tracemalloc counts, the object types whose count grew, and the
source lines whose live memory grew most. At the end, the lines that grew
over the whole run, each with its call stack. RSS that climbs while the live
Python memory stays flat is the allocator, not a leak.

The simulated firmware's logs fill for their first minutes (1024 entries
each), so settle past that (``--settle``) or expect them among the first
intervals' lines.

    python -m bench.memtrace [--guns 16] [--telemetry-hz 25] [--state-s 0.5]
                             [--settle 240] [--seconds 600] [--every 120]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import TextIO

from bench.report import report
from bench.soak import broker, rss_mb

FRAMES = 25  # call stack kept for each allocation
TOP = 12  # lines printed for each interval


def object_counts() -> Counter[str]:
    return Counter(type(o).__name__ for o in gc.get_objects())


def snapshot() -> tuple[tracemalloc.Snapshot, Counter[str]]:
    gc.collect()
    taken = tracemalloc.take_snapshot()
    gc.collect()  # the snapshot's own tuples are not the daemon's: untracked, uncounted
    return taken, object_counts()


def memory(began: float) -> dict[str, float]:
    """The process's RSS beside the live Python memory tracemalloc counts, now."""
    row = {
        "s": round(time.monotonic() - began),
        "RSS MB": round(rss_mb(os.getpid()), 2),
        "live Python MB": round(tracemalloc.get_traced_memory()[0] / 2**20, 2),
    }
    print(row, flush=True)
    return row


async def trace(args: argparse.Namespace, port: int, data_dir: str, log: TextIO) -> None:
    os.environ["GUNCTL_DATA_DIR"] = data_dir
    from gunctl.config import load_settings
    from gunctl.logs import configure
    from gunctl.mqtt.service import Service

    settings = load_settings(
        None,
        node_id="memtrace",
        telemetry_hz=args.telemetry_hz,
        state_interval_s=args.state_s,
        mqtt={"host": "127.0.0.1", "port": port},
        devices={"sim": args.guns},
    )
    configure(level=settings.log_level, stream=log)
    service = Service(settings)
    await service.start()
    try:
        await asyncio.sleep(args.settle)
        tracemalloc.start(FRAMES)
        first, first_counts = snapshot()
        began = time.monotonic()
        rows = [memory(began)]
        previous, previous_counts = first, first_counts
        while time.monotonic() - began < args.seconds:
            await asyncio.sleep(args.every)
            current, counts = snapshot()
            rows.append(memory(began))
            print("  objects grown:", (counts - previous_counts).most_common(TOP))
            for stat in current.compare_to(previous, "lineno")[:TOP]:
                print("  ", stat)
            previous, previous_counts = current, counts
        print("over the whole run, with where each was allocated from:")
        for stat in previous.compare_to(first, "traceback")[: TOP // 2]:
            print(f"{stat.size_diff / 1024:+.1f} KiB in {stat.count_diff:+d} blocks, from:")
            for line in stat.traceback.format(most_recent_first=True)[:FRAMES]:
                print("    ", line)
        print("objects grown:", (previous_counts - first_counts).most_common(2 * TOP))
        title = f"gunctl serve --sim {args.guns} in-process, from {args.settle:g} s in"
        report("memtrace", title, rows, vars(args))
    finally:
        tracemalloc.stop()
        await service.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.memtrace", description=__doc__)
    parser.add_argument("--guns", type=int, default=16)
    parser.add_argument("--telemetry-hz", type=float, default=25.0)
    parser.add_argument("--state-s", type=float, default=0.5, help="state published this often")
    parser.add_argument("--settle", type=float, default=240.0, help="seconds before the first")
    parser.add_argument("--seconds", type=float, default=600.0)
    parser.add_argument("--every", type=float, default=120.0, help="seconds between snapshots")
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(prefix="gunctl-memtrace-") as tmp,
        broker(Path(tmp)) as port,
        open(os.devnull, "w") as log,
    ):
        asyncio.run(trace(args, port, tmp, log))


if __name__ == "__main__":
    main()
