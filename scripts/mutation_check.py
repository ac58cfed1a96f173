"""Break each safety mechanism in turn and check that the tests catch it.

A safety test that cannot fail proves nothing. Each mutation below removes
one mechanism (a clamp, a margin, a stop frame) from a copy of the sources;
the tests named beside it run against that copy and must fail. The working
tree is never touched: the copy goes first on ``PYTHONPATH``.

    .venv/bin/python scripts/mutation_check.py [--only NAME]   (or: make mutation-check)

It prints one line per mutation and exits 1 if any went unnoticed. It takes
about a minute; it is not part of CI.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONTROL = "tests/control"


@dataclass(frozen=True)
class Mutation:
    name: str
    file: str  # relative to the repository
    old: str
    new: str
    tests: tuple[str, ...]


MUTATIONS = [
    Mutation(
        "driver clamp ignores the step's cap",
        "src/gunctl/control/driver.py",
        "min(intensity, cap, 1.0)",
        "min(intensity, 1.0)",
        (f"{CONTROL}/test_backstops.py",),
    ),
    Mutation(
        "temperature rule ignores the firmware cutoff margin",
        "src/gunctl/control/rules.py",
        "stop_at = min(stop_at, firmware - 5)",
        "stop_at = min(stop_at, firmware + 50)",
        (f"{CONTROL}/test_backstops.py",),
    ),
    Mutation(
        "no slew limit",
        "src/gunctl/control/supervisor.py",
        "target = min(target, self._intensity + self.limits.slew_per_s * dt)",
        "target = target",
        (f"{CONTROL}/test_backstops.py",),
    ),
    Mutation(
        "close() writes no stop frame",
        "src/gunctl/control/supervisor.py",
        "        try:\n            await self._stop_now()\n        except LinkError as exc:",
        "        try:\n            pass\n        except LinkError as exc:",
        (f"{CONTROL}/test_backstops.py",),
    ),
    Mutation(
        "a step's cap ignores the person's cap",
        "src/gunctl/profiles/plan.py",
        "cap=min(muscle.intensity_cap, user_cap),",
        "cap=muscle.intensity_cap,",
        (f"{CONTROL}/test_backstops.py",),
    ),
    Mutation(
        "telemetry rules wait for the tick, not the frame",
        "src/gunctl/control/supervisor.py",
        "        self.telemetry.update(report, note.received_at)\n"
        "        self._act_later(self._telemetry_verdicts(note.received_at))\n",
        "        self.telemetry.update(report, note.received_at)\n",
        (f"{CONTROL}/test_latched_faults.py", f"{CONTROL}/test_rules.py"),
    ),
    Mutation(
        "a start is not checked against the faults already reported",
        "src/gunctl/control/supervisor.py",
        "                return\n            await self._check_telemetry()\n",
        "                return\n",
        (f"{CONTROL}/test_latched_faults.py",),
    ),
    Mutation(
        "a latched fault flag from an earlier event refuses the session",
        "src/gunctl/control/rules.py",
        "            present = faults - latched\n",
        "            present = faults\n",
        (f"{CONTROL}/test_latched_faults.py",),
    ),
    Mutation(
        "a host pause is discounted from a real gun's silence too",
        "src/gunctl/control/supervisor.py",
        "self._discounts_pauses = link.in_process or clock.scale > 1",
        "self._discounts_pauses = True",
        (f"{CONTROL}/test_time_scale.py",),
    ),
    Mutation(
        "a host pause counts as a simulated gun's silence",
        "src/gunctl/control/rules.py",
        "max(since, tick.watching_since) - tick.host_paused_s",
        "max(since, tick.watching_since)",
        (f"{CONTROL}/test_time_scale.py",),
    ),
    Mutation(
        "the simulated watchdog counts a host pause",
        "simulator/gunsim/device.py",
        "self.firmware.hold_timers(self.clock.host_pause(now - self._t - self._period))",
        "self.firmware.hold_timers(0.0)",
        (f"{CONTROL}/test_time_scale.py",),
    ),
    Mutation(
        "the systemd watchdog is fed while a control loop is frozen",
        "src/gunctl/systemd.py",
        "        if frozen:\n",
        "        if False:\n",
        ("tests/mqtt/test_systemd.py",),
    ),
    Mutation(
        "the ledger lets a start pass a cap",
        "src/gunctl/store/history.py",
        "                raise ExposureRefused(over)\n",
        "                pass\n",
        (f"{CONTROL}/test_shared_caps.py", "tests/mqtt/test_caps_cli_and_daemon.py"),
    ),
    Mutation(
        "the ledger ignores what running sessions booked",
        "src/gunctl/store/history.py",
        "prior[(muscle, side)] = float(recorded) + float(reserved)",
        "prior[(muscle, side)] = float(recorded)",
        (f"{CONTROL}/test_shared_caps.py",),
    ),
    *(
        Mutation(
            f"the diary rule {rule} is left out",
            "src/gunctl/store/diary.py",
            f'    "{rule}": {rule},\n',
            "",
            (f"{CONTROL}/test_diary_rules.py",),
        )
        for rule in ("pain_severe", "pain_rising", "pain_spreading", "not_improving")
    ),
    Mutation(
        "a start is not checked against the diary",
        "src/gunctl/control/supervisor.py",
        "            if (verdict := self.exposure.diary_refusal()) is not None:\n",
        "            if (verdict := None) is not None:\n",
        (f"{CONTROL}/test_diary_rules.py",),
    ),
    Mutation(
        "a professional's visit does not start a new baseline",
        "src/gunctl/store/history.py",
        'start = _iso(since) if since is not None else (visit or "")',
        'start = _iso(since) if since is not None else ""',
        (f"{CONTROL}/test_diary_rules.py",),
    ),
    Mutation(
        "a stop written without response is not written again while the motor runs",
        "src/gunctl/control/supervisor.py",
        '            self._confirm_stop(report.get("running"))\n',
        "            pass\n",
        (f"{CONTROL}/test_hung_link.py",),
    ),
    Mutation(
        "a stop queues behind a write still waiting for its acknowledgement",
        "src/gunctl/control/driver.py",
        "            if urgent:\n",
        "            if False:\n",
        (f"{CONTROL}/test_hung_link.py",),
    ),
    Mutation(
        "a latched fault flag raised while running is ignored",
        "src/gunctl/control/rules.py",
        "            present = faults - self.earlier if clearing else faults\n",
        "            present = faults - latched\n",
        (f"{CONTROL}/test_latched_faults.py",),
    ),
]


def run_tests(tests: tuple[str, ...], sources: Path) -> tuple[bool, float, str]:
    """Run ``tests`` against the copy in ``sources``: passed, seconds, pytest's last lines."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(sources / "src"), str(sources / "simulator"), env.get("PYTHONPATH", "")]
    )
    began = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests],
        cwd=ROOT,
        env=env,
        capture_output=True,
        check=False,
    )
    tail = "\n".join(result.stdout.decode(errors="replace").splitlines()[-15:])
    return result.returncode == 0, time.monotonic() - began, tail


def mutated_copy(mutation: Mutation | None, into: Path) -> Path:
    """A copy of the sources and the data they read, with ``mutation`` applied."""
    for part in ("src", "simulator", "firmware_specs", "profiles"):
        shutil.copytree(ROOT / part, into / part, ignore=shutil.ignore_patterns("__pycache__"))
    if mutation is None:
        return into
    target = into / mutation.file
    text = target.read_text()
    if text.count(mutation.old) != 1:
        raise SystemExit(f"{mutation.name}: the code to break is not in {mutation.file} once")
    target.write_text(text.replace(mutation.old, mutation.new))
    return into


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run the mutations whose name contains this")
    args = parser.parse_args()
    chosen = [m for m in MUTATIONS if args.only is None or args.only in m.name]
    every_test = tuple(sorted({t for m in chosen for t in m.tests}))
    with tempfile.TemporaryDirectory(prefix="gunctl-unmutated-") as tmp:
        passed, took, tail = run_tests(every_test, mutated_copy(None, Path(tmp)))
    if not passed:
        print(f"{tail}\nthe tests fail on an unmutated copy ({took:.0f} s): fix that first")
        return 2
    print(f"unmutated copy: {len(every_test)} test files pass ({took:.0f} s)")
    missed = 0
    began = time.monotonic()
    for mutation in chosen:
        with tempfile.TemporaryDirectory(prefix="gunctl-mutant-") as tmp:
            passed, took, _ = run_tests(mutation.tests, mutated_copy(mutation, Path(tmp)))
        verdict = "MISSED" if passed else "caught"
        missed += passed
        print(f"{verdict:7} {took:5.1f} s  {mutation.name}")
    print(f"{len(chosen) - missed} of {len(chosen)} caught in {time.monotonic() - began:.0f} s")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
