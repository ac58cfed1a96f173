"""Memory over time: ``gunctl serve --sim 8`` must hold flat memory, not grow with uptime.

Starts a private Mosquitto and ``gunctl serve --sim N`` against it (every
simulated gun streaming telemetry and taking the daemon's keepalives, as at
home), samples the daemon's resident memory (RSS, from /proc) every few
seconds. The floor is the daemon's own RSS once it is up (20 s in). Flat
memory: over the second half of the run, RSS grows (least-squares fit) less
than :data:`FLAT_MB_PER_H`. The simulated firmware's logs fill in about 3.5
minutes at 5 frames a second, so the default five minutes shows their
plateau and cannot be flat; an hour shows everything else.

    python -m bench.soak [--seconds 300] [--guns 8] [--every 5]   (--seconds 3600: an hour)
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.report import report

MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
SETTLE_S = 20.0  # imports done, every gun connected
# Flat: the second half grows less than this, an order of magnitude under the 3.5 MB an
# hour that the simulated person's segments leaked (a day: under 12 MB)
FLAT_MB_PER_H = 0.5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if process.poll() is not None:
            raise RuntimeError("mosquitto exited")
        time.sleep(0.05)
    raise RuntimeError("mosquitto did not start listening")


@contextlib.contextmanager
def broker(folder: Path) -> Iterator[int]:
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(
        f"listener {port} 127.0.0.1\nuser {getpass.getuser()}\nallow_anonymous true\n"
        "persistence false\nlog_type error\n"
    )
    process = subprocess.Popen(
        [MOSQUITTO, "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_listening(port, process)
        yield port
    finally:
        process.kill()
        process.wait(5)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def soak(seconds: float, guns: int, every: float) -> list[tuple[float, float]]:
    gunctl = Path(sys.executable).with_name("gunctl")
    with tempfile.TemporaryDirectory(prefix="gunctl-soak-") as tmp, broker(Path(tmp)) as port:
        env = dict(os.environ, GUNCTL_DATA_DIR=tmp)
        command = [str(gunctl), "serve", "--sim", str(guns), "--node-id", "soak"]
        command += ["--mqtt-host", "127.0.0.1", "--mqtt-port", str(port)]
        daemon = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        samples: list[tuple[float, float]] = []
        began = time.monotonic()
        try:
            while (elapsed := time.monotonic() - began) < seconds:
                if daemon.poll() is not None:
                    raise RuntimeError(f"gunctl serve exited with {daemon.returncode}")
                samples.append((elapsed, rss_mb(daemon.pid)))
                time.sleep(every)
        finally:
            daemon.terminate()
            daemon.wait(20)
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--seconds", type=float, default=300.0, help="3600 for an hour")
    parser.add_argument("--guns", type=int, default=8)
    parser.add_argument("--every", type=float, default=5.0, help="seconds between samples")
    args = parser.parse_args()
    samples = soak(args.seconds, args.guns, args.every)
    rows, flat = summary(samples)
    report(
        "soak",
        f"gunctl serve --sim {args.guns}: resident memory over {args.seconds:g} s",
        rows,
        {"guns": args.guns, "seconds": args.seconds, "flat": flat, "samples": samples},
    )
    verdict = "met" if flat else "not met"
    print(f"flat memory (second half grows under {FLAT_MB_PER_H:g} MB an hour): {verdict}")


def summary(samples: list[tuple[float, float]]) -> tuple[list[dict[str, Any]], bool]:
    """The table's rows for ``samples`` (seconds, MB), and whether memory held flat."""
    up = [mb for t, mb in samples if t >= SETTLE_S] or [samples[-1][1]]
    half = samples[len(samples) // 2 :]
    last = samples[len(samples) * 3 // 4 :]
    growth = slope_mb_per_h(half)
    rows: list[dict[str, Any]] = [
        {"measure": f"RSS {SETTLE_S:g} s after start (floor)", "MB": round(up[0], 1)},
        {"measure": "RSS at the end", "MB": round(samples[-1][1], 1)},
        {"measure": "RSS max", "MB": round(max(mb for _, mb in samples), 1)},
        {"measure": "last quarter: max - min", "MB": round(spread(last), 2)},
        {"measure": "last quarter: growth per hour (fit)", "MB": round(slope_mb_per_h(last), 2)},
        {"measure": "second half: growth per hour (fit)", "MB": round(growth, 2)},
    ]
    return rows, growth < FLAT_MB_PER_H


def spread(samples: list[tuple[float, float]]) -> float:
    return max(mb for _, mb in samples) - min(mb for _, mb in samples)


def slope_mb_per_h(part: list[tuple[float, float]]) -> float:
    """Least-squares growth of RSS over ``part`` of the run, in MB per hour."""
    if len(part) < 2:
        return 0.0
    mean_t = sum(t for t, _ in part) / len(part)
    mean_m = sum(m for _, m in part) / len(part)
    var = sum((t - mean_t) ** 2 for t, _ in part)
    cov = sum((t - mean_t) * (m - mean_m) for t, m in part)
    return cov / var * 3600 if var else 0.0


if __name__ == "__main__":
    main()
