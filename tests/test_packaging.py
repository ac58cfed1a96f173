"""A user who installs the wheel gets the shipped specs and profiles, from any directory."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "hatchling", "build", "-t", "wheel", "-d", str(out)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("gunctl-*.whl")
    return built


def test_the_wheel_carries_specs_profiles_and_the_simulator(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "gunctl/_data/firmware_specs/theragun-gen4.yaml",
        "gunctl/_data/firmware_specs/gunctl-open.yaml",
        "gunctl/_data/firmware_specs/basic-5level.yaml",
        "gunctl/_data/profiles/muscles.yaml",
        "gunctl/_data/profiles/protocols/glute.yaml",
        "gunsim/device.py",
    } <= names


def test_the_installed_package_finds_its_data_from_anywhere(wheel: Path, tmp_path: Path) -> None:
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = (
        "from gunctl.resources import shipped; from gunctl.specs.loader import load_specs; "
        "from gunctl.profiles.loader import load_catalogue; "
        "print(shipped('profiles')); print(sorted(load_specs())); "
        "print('glute' in load_catalogue().protocols)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(site), "PYTHONSAFEPATH": "1"},
        capture_output=True,
        text=True,
        check=True,
    )
    where, specs, glute = result.stdout.splitlines()
    assert where.startswith(str(site))  # the wheel's copy, not the source checkout
    assert specs == "['basic-5level', 'gunctl-open', 'theragun-gen4']"
    assert glute == "True"
