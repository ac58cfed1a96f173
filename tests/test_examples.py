"""The documentation runs: the README's Python example and every file in examples/.

The README example runs as a person would run it, in a fresh Python, at the
time scale it shows; the example scripts run their ``main()`` in loop time; the
example test file runs under pytest as a user would run it.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## From Python", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.S)
    assert match is not None, "the README's From Python section has no python block"
    return match.group(1)


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_readme_example_runs_and_prints_what_the_readme_says(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(readme_example(), encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "session_completed done"
    assert "It prints `session_completed done`" in (ROOT / "README.md").read_text()


@pytest.mark.looptime(noop_cycles=1)
async def test_run_protocol_example() -> None:
    outcome = await load("run_protocol").main()
    assert outcome.type == "session_completed"


@pytest.mark.looptime(noop_cycles=1)
async def test_watch_telemetry_example() -> None:
    seen = await load("watch_telemetry").main()
    assert seen
    assert all(state.step is not None for state in seen)
    assert any(state.motor_running for state in seen)


def test_the_example_test_file_passes_under_pytest() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "examples"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "2 passed" in done.stdout


def test_every_example_is_run_here() -> None:
    ran = {"run_protocol", "watch_telemetry", "test_my_routine"}
    assert {path.stem for path in EXAMPLES.glob("*.py")} == ran
