"""Every command meets bad input as a person would: one clear line, a documented exit code.

Each row runs a real ``gunctl`` or ``gunsim`` process in a scratch folder with
a bad data folder, file, option or ``GUNCTL_*`` variable, and checks that no
traceback reaches the person, that the exit code is one of
``gunctl.errors.EXIT_CODES`` (and not the one for a bug), and what it says.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_run import QUICK  # the short protocol of the run tests

from gunctl.errors import (
    EXIT_CODES,
    EXIT_INTERNAL,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_STORAGE,
    EXIT_UNREACHABLE,
)

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
ROOT = os.geteuid() == 0  # root writes through read-only permissions: those rows cannot fail


def binary(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xd2\xff\xfe" + bytes(range(256)))
    return path


def history_of(garbage: bytes) -> Callable[[Path], None]:
    def make(tmp: Path) -> None:
        (tmp / "data").mkdir()
        (tmp / "data" / "history.sqlite3").write_bytes(garbage)

    return make


def truncated_history(tmp: Path) -> None:
    from gunctl.control.events import SessionCompleted
    from gunctl.store.history import History

    with History(tmp / "data" / "history.sqlite3") as store:
        for n in range(40):
            store.begin(device=f"gun-{n}", protocol="glute", planned_s=60.0)
            store.record(SessionCompleted(at=1.0, device=f"gun-{n}", worked_s=1.0))
    for leftover in (tmp / "data").glob("history.sqlite3-*"):
        leftover.unlink()
    path = tmp / "data" / "history.sqlite3"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def read_only_history(tmp: Path) -> None:
    from gunctl.store.history import History

    History(tmp / "data" / "history.sqlite3").close()
    (tmp / "data" / "history.sqlite3").chmod(0o444)
    (tmp / "data").chmod(0o555)


def broken_user_file(tmp: Path) -> None:
    binary(tmp / "profiles" / "protocols" / "mine.yaml")
    (tmp / "profiles" / "protocols" / "quick.yaml").write_text(QUICK)


@dataclass
class Case:
    name: str
    argv: list[str]
    code: int
    says: str = ""  # a phrase the output must hold
    env: dict[str, str] = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None
    as_root: bool = True  # False: the row needs a user that permissions apply to


SIM = ["--sim", "--yes", "--time-scale", "100", "--side", "left"]
SERVE = ["gunctl", "serve", "--sim", "1", "--mqtt-port", "1"]  # fails before any broker is needed
NOWHERE_BUS = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"}

CASES = [
    # the data folder
    Case(
        "data dir is a file",
        ["gunctl", "history"],
        EXIT_STORAGE,
        "it is a file",
        env={"GUNCTL_DATA_DIR": "{tmp}/afile"},
        setup=lambda t: (t / "afile").touch(),
    ),
    Case(
        "data dir is a file: run",
        ["gunctl", "run", "glute", *SIM],
        EXIT_STORAGE,
        "GUNCTL_DATA_DIR",
        env={"GUNCTL_DATA_DIR": "{tmp}/afile"},
        setup=lambda t: (t / "afile").touch(),
    ),
    Case(
        "data dir under a file",
        ["gunctl", "history", "export"],
        EXIT_STORAGE,
        "Not a directory",
        env={"GUNCTL_DATA_DIR": "{tmp}/afile/sub"},
        setup=lambda t: (t / "afile").touch(),
    ),
    Case(
        "data dir under a file: run",
        ["gunctl", "run", "glute", *SIM],
        EXIT_STORAGE,
        "GUNCTL_DATA_DIR",
        env={"GUNCTL_DATA_DIR": "{tmp}/afile/sub"},
        setup=lambda t: (t / "afile").touch(),
    ),
    Case(
        "data dir in /proc",
        ["gunctl", "history"],
        EXIT_STORAGE,
        "/proc/gunctl-data",
        env={"GUNCTL_DATA_DIR": "/proc/gunctl-data"},
    ),
    Case(
        "data dir in /proc: run",
        ["gunctl", "run", "glute", *SIM],
        EXIT_STORAGE,
        "cannot be used",
        env={"GUNCTL_DATA_DIR": "/proc/gunctl-data"},
    ),
    Case(
        "data dir read-only: run",
        ["gunctl", "run", "glute", *SIM],
        EXIT_STORAGE,
        "GUNCTL_DATA_DIR",
        setup=lambda t: (t / "data").mkdir(mode=0o555),
        as_root=False,
    ),
    # files that are not text
    Case(
        "spec not UTF-8",
        ["gunctl", "specs", "validate", "{tmp}/x.png"],
        EXIT_INVALID,
        "not UTF-8",
        setup=lambda t: binary(t / "x.png") and None,
    ),
    Case(
        "profile not UTF-8",
        ["gunctl", "profiles", "validate", "{tmp}/x.png"],
        EXIT_INVALID,
        "not UTF-8",
        setup=lambda t: binary(t / "x.png") and None,
    ),
    Case(
        "broken user file: list",
        ["gunctl", "profiles", "list"],
        EXIT_OK,
        "mine.yaml",
        env={"GUNCTL_PROFILES": "{tmp}/profiles"},
        setup=broken_user_file,
    ),
    Case(
        "broken user file: run",
        ["gunctl", "run", "quick", "--sim", "--yes", "--time-scale", "20"],
        EXIT_OK,
        "not UTF-8",
        env={"GUNCTL_PROFILES": "{tmp}/profiles"},
        setup=broken_user_file,
    ),
    Case(
        "broken user file: show",
        ["gunctl", "profiles", "show", "mine"],
        EXIT_INVALID,
        "no protocol or muscle named 'mine'",
        env={"GUNCTL_PROFILES": "{tmp}/profiles"},
        setup=broken_user_file,
    ),
    # output
    Case(
        "export to a missing folder",
        ["gunctl", "history", "export", "--output", "/nonexistent/dir/s.csv"],
        EXIT_STORAGE,
        "/nonexistent/dir/s.csv",
    ),
    # the simulator's own options
    Case(
        "gunsim scale 0", ["gunsim", "run", "gunctl-open", "--scale", "0"], EXIT_INVALID, "--scale"
    ),
    Case(
        "gunsim seconds -1",
        ["gunsim", "run", "gunctl-open", "--seconds", "-1"],
        EXIT_INVALID,
        "--seconds",
    ),
    Case("gunsim unknown family", ["gunsim", "run", "nosuch"], EXIT_INVALID, "nosuch"),
    # a damaged history
    Case(
        "corrupt history: list",
        ["gunctl", "history"],
        EXIT_STORAGE,
        "is damaged",
        setup=history_of(os.urandom(4096)),
    ),
    Case(
        "corrupt history: run",
        ["gunctl", "run", "glute", *SIM],
        EXIT_STORAGE,
        "mv ",
        setup=history_of(os.urandom(4096)),
    ),
    Case(
        "corrupt history: serve",
        SERVE,
        EXIT_STORAGE,
        "is damaged",
        setup=history_of(os.urandom(4096)),
    ),
    Case(
        "truncated history: list",
        ["gunctl", "history"],
        EXIT_STORAGE,
        "history",
        setup=truncated_history,
    ),
    Case(
        "truncated history: run",
        ["gunctl", "run", "glute", *SIM],
        EXIT_STORAGE,
        "history",
        setup=truncated_history,
    ),
    Case(
        "read-only history: list",
        ["gunctl", "history"],
        EXIT_OK,
        "No sessions yet",
        setup=read_only_history,
        as_root=False,
    ),
    Case(
        "read-only history: run",
        ["gunctl", "run", "glute", *SIM],
        EXIT_STORAGE,
        "read-only",
        setup=read_only_history,
        as_root=False,
    ),
    Case(
        "read-only history: serve",
        SERVE,
        EXIT_STORAGE,
        "read-only",
        setup=read_only_history,
        as_root=False,
    ),
    # settings and variables
    Case(
        "profiles folder nowhere: serve",
        SERVE,
        EXIT_INVALID,
        "does not exist",
        env={"GUNCTL_PROFILES": "/nowhere"},
    ),
    Case(
        "profiles folder nowhere: list",
        ["gunctl", "profiles", "list"],
        EXIT_INVALID,
        "/nowhere",
        env={"GUNCTL_PROFILES": "/nowhere"},
    ),
    Case(
        "binary password file",
        [*SERVE, "--mqtt-user", "u", "--mqtt-password-file", "{tmp}/pw"],
        EXIT_INVALID,
        "not a text file",
        setup=lambda t: binary(t / "pw") and None,
    ),
    Case(
        "list variable not JSON",
        ["gunctl", "serve", "--mqtt-port", "1"],
        EXIT_INVALID,
        "GUNCTL_* variables",
        env={"GUNCTL_DEVICES_BLE": "C4:5A"},
    ),
    Case(
        "negative sim count",
        ["gunctl", "serve"],
        EXIT_INVALID,
        "devices.sim",
        env={"GUNCTL_DEVICES_SIM": "-1"},
    ),
    Case(
        "time scale not a number",
        SERVE,
        EXIT_INVALID,
        "time_scale",
        env={"GUNCTL_TIME_SCALE": "fast"},
    ),
    Case(
        "a vanishing time scale",
        SERVE,
        EXIT_INVALID,
        "time_scale",
        env={"GUNCTL_TIME_SCALE": "1e-300"},
    ),
    Case(
        "a vanishing telemetry rate",
        SERVE,
        EXIT_INVALID,
        "telemetry_hz",
        env={"GUNCTL_TELEMETRY_HZ": "1e-300"},
    ),
    Case(
        "a vanishing state interval",
        SERVE,
        EXIT_INVALID,
        "state_interval_s",
        env={"GUNCTL_STATE_INTERVAL_S": "1e-300"},
    ),
    Case(
        "an empty BLE address",
        ["gunctl", "serve"],
        EXIT_INVALID,
        "empty address",
        env={"GUNCTL_DEVICES_BLE": '[""]'},
    ),
    Case(
        "missing config file", [*SERVE, "--config", "/nowhere.toml"], EXIT_INVALID, "/nowhere.toml"
    ),
    Case(
        "bad side variable",
        ["gunctl", "run", "glute", "--sim", "--yes"],
        EXIT_INVALID,
        "middle",
        env={"GUNCTL_SIDE": "middle"},
    ),
    Case(
        "bad time scale variable",
        ["gunctl", "run", "glute", "--sim", "--yes"],
        EXIT_INVALID,
        "0",
        env={"GUNCTL_TIME_SCALE": "0"},
    ),
    Case(
        "bad test clock",
        ["gunctl", "run", "glute", *SIM],
        EXIT_INVALID,
        "GUNCTL_TEST_NOW",
        env={"GUNCTL_TEST_NOW": "soon"},
    ),
    Case("bad log level", ["gunctl", "--log-level", "loud", "history"], EXIT_INVALID, "loud"),
    # no Bluetooth
    Case(
        "scan without BlueZ",
        ["gunctl", "scan", "--timeout", "1"],
        EXIT_UNREACHABLE,
        "BlueZ",
        env=NOWHERE_BUS,
    ),
    Case(
        "run without BlueZ",
        ["gunctl", "run", "glute", "--device", "Pro", "--yes"],
        EXIT_UNREACHABLE,
        "BlueZ",
        env=NOWHERE_BUS,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_clear_line_and_a_documented_code(case: Case, tmp_path: Path) -> None:
    if ROOT and not case.as_root:
        pytest.skip("permissions do not apply to root")
    if case.setup is not None:
        case.setup(tmp_path)
    env = {
        **os.environ,
        "GUNCTL_DATA_DIR": str(tmp_path / "data"),
        "COLUMNS": "100",
        **{k: v.format(tmp=tmp_path) for k, v in case.env.items()},
    }
    if "GUNCTL_PROFILES" not in case.env:
        env.pop("GUNCTL_PROFILES", None)
    argv = [str(BIN / case.argv[0]), *(a.format(tmp=tmp_path) for a in case.argv[1:])]
    try:
        result = subprocess.run(
            argv,
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
    finally:
        for path in (tmp_path / "data", tmp_path / "data" / "history.sqlite3"):
            if path.exists():
                path.chmod(0o755)
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out
    assert result.returncode in EXIT_CODES, out
    assert result.returncode != EXIT_INTERNAL, out
    assert result.returncode == case.code, out
    assert case.says in out, out
    if case.code in (EXIT_STORAGE, EXIT_UNREACHABLE):
        line = next(line for line in result.stderr.splitlines() if line.startswith("gunctl: "))
        assert " — " in line, line  # what went wrong — what to do next
