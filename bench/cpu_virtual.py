"""The Supervisor's own CPU per device-tick, in virtual time: the same work whatever the load.

    python -m bench.cpu_virtual [--seconds 10] [--devices 64]

``bench.supervisor --split`` runs in real time, so on a loaded machine its
ticks overrun, the missed ticks are skipped, and the telemetry frames (25 Hz
whatever happens) fall on fewer ticks: its CPU per device-tick then measures
the load as much as the code. This runs the same split under ``looptime``:
virtual time passes only when the loop is idle, so every run does exactly the
same ticks and frames (no overrun), and what varies between runs is only the
CPU each takes. The simulated guns and the Supervisors are the same as in
the real-time run; asyncio's own share ("other") includes looptime's
bookkeeping. Compare runs of one machine, alternating the versions compared.
"""

from __future__ import annotations

import argparse

import looptime

from bench.report import report
from bench.supervisor import SPEC, cpu_split
from gunctl.logs import configure


async def main(seconds: float, devices: int) -> None:
    configure(level="critical")
    report(
        "supervisor_cpu_virtual",
        f"CPU per device-tick by part, {devices} guns for {seconds:g} s of virtual time",
        await cpu_split(devices, seconds),
        {"spec": SPEC, "time": "virtual"},
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--devices", type=int, default=64)
    args = parser.parse_args()
    loop = looptime.new_event_loop(start=0.0, noop_cycles=1)
    try:
        loop.run_until_complete(main(args.seconds, args.devices))
    finally:
        loop.close()
