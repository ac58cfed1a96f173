"""The README's "Trying BLE with no hardware", as a person follows it, to the end of glute.

Two terminals: ``python -m gunsim.bluez`` in one (whose keyboard fits the fake
gun's heads), ``gunctl scan`` then ``gunctl run glute --device NAME --yes`` in
the other. Both run three times faster than real time (the fake's ``--scale``,
gunctl's ``--time-scale``, allowed because BlueZ is on gunsim's private bus),
and on the left side only, so that the walk-through takes about a minute and a half, not four.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

pytestmark = [pytest.mark.ble, pytest.mark.slow]

GUNCTL = str(Path(sys.executable).with_name("gunctl"))
SCALE = "3"


# Over real D-Bus, a machine busy with other work can starve the link (gunctl, the bus or
# the fake) for longer than the staleness limit or the firmware's watchdog, which hold as
# long in real time at this scale as in a real run; the safety rules then stop the session
# as they should. Such a stop earns one more try; any other ending is final.
LOAD_STOPS = ("stale_telemetry", "the device reports watchdog")


def _walk(fake: pexpect.spawn, env: dict[str, str], name: str) -> tuple[int, list[str], str]:
    """One ``gunctl run glute`` in a terminal, fitting each head in the fake's terminal."""
    run = pexpect.spawn(
        GUNCTL,
        ["run", "glute", "--device", name, "--yes", "--side", "left", "--time-scale", SCALE],
        env=env,
        dimensions=(40, 120),
        encoding="utf-8",
        timeout=60,
    )
    fitted = []
    while run.expect([r"Fit the (\w+) head", pexpect.EOF]) == 0:
        head = run.match.group(1).lower()
        fake.sendline(head)  # the other terminal: fit it on the gun
        fake.expect(f"fitted the {head} head on {name}")
        fitted.append(head)
        run.send("\r")  # then confirm it in gunctl
        # The prompt is redrawn until gunctl takes the Enter; read past those copies to the
        # running step, so that one head change is counted once.
        run.expect([r"hold ", pexpect.EOF])
    run.close()
    return run.exitstatus, fitted, run.before


@pytest.mark.timeout(240)
def test_the_readme_walk_through_completes_glute(tmp_path: Path) -> None:
    fake = pexpect.spawn(  # the README starts theragun-gen4 too; one gun keeps the load down
        sys.executable,
        ["-m", "gunsim.bluez", "--family", "gunctl-open", "--scale", SCALE],
        encoding="utf-8",
        timeout=20,
    )
    try:
        fake.expect(r"export DBUS_SYSTEM_BUS_ADDRESS=(\S+)")
        env = {
            **os.environ,
            "DBUS_SYSTEM_BUS_ADDRESS": fake.match.group(1),
            "GUNCTL_DATA_DIR": str(tmp_path),
            "COLUMNS": "120",
        }
        env.pop("GUNCTL_PROFILES", None)
        scan = subprocess.run(
            [GUNCTL, "scan", "--json", "--timeout", "2"],
            env=env,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        (name,) = [g["name"] for g in json.loads(scan.stdout) if g["spec"] == "gunctl-open"]

        for _attempt in range(2):
            status, fitted, said = _walk(fake, env, name)
            if status != 3 or not any(m in said for m in LOAD_STOPS):
                break  # anything but a stop a loaded machine can cause is final
        assert status == 0, said
        assert fitted == ["ball", "thumb", "bullet"]
    finally:
        fake.sendintr()
        fake.expect(pexpect.EOF)
        fake.close()

    history = subprocess.run(
        [GUNCTL, "history", "--json"], env=env, capture_output=True, text=True, check=True
    )
    record = json.loads(history.stdout)[-1]
    assert record["status"] == "completed"
    assert record["simulated"]  # faster than real time: never a person's exposure
    assert record["time_scale"] == float(SCALE)
    assert [m["muscle"] for m in record["muscles"]] == [
        "gluteus-maximus",
        "gluteus-medius",
        "gluteus-minimus",
        "piriformis",
    ]


def test_bluez_dying_mid_session_is_a_lost_link_exit_4_and_no_traceback(tmp_path: Path) -> None:
    fake = subprocess.Popen(
        [sys.executable, "-m", "gunsim.bluez", "--family", "gunctl-open"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert fake.stdout is not None
    bus = fake.stdout.readline().strip().split("=", 1)[1]
    env = {**os.environ, "DBUS_SYSTEM_BUS_ADDRESS": bus, "GUNCTL_DATA_DIR": str(tmp_path)}
    env.pop("GUNCTL_PROFILES", None)
    run = subprocess.Popen(
        [GUNCTL, "run", "glute", "--device", "gunctl-8901", "--yes", "--json"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    assert run.stdout is not None
    for line in run.stdout:
        if json.loads(line)["type"] == "step_started":
            break
    fake.send_signal(signal.SIGINT)  # BlueZ and its bus go away mid-hold
    _, err = run.communicate(timeout=30)
    _, fake_err = fake.communicate(timeout=30)
    assert run.returncode == 4, err
    assert "link lost" in err
    for text in (err, fake_err):
        assert "Traceback" not in text
        assert "never retrieved" not in text
