"""Every public error, caught the way a user would: by its class, reading its reason.

Each case makes gunctl fail for real (a bad file, an unknown name, a refused
request, a link gone, bleak-retry-connector's own failures) and catches the
error by the class a user would name. ``test_every_public_error_has_a_case``
keeps the list whole: a new error in ``gunctl.errors`` needs a case here.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from bleak.exc import BleakError
from bleak_retry_connector import (
    BleakAbortedError,
    BleakNotFoundError,
    BleakOutOfConnectionSlotsError,
)

from gunctl import errors
from gunctl.cli.boundary import exit_code_for
from gunctl.clock import Clock
from gunctl.config import load_settings
from gunctl.control.supervisor import Supervisor
from gunctl.datafile import InvalidFileError
from gunctl.errors import (
    EXIT_INVALID,
    EXIT_SAFETY,
    EXIT_STORAGE,
    EXIT_UNREACHABLE,
    GunctlError,
)
from gunctl.links.base import Endpoint
from gunctl.links.ble import connect_error
from gunctl.links.proxy import Proxies
from gunctl.links.scan import scan
from gunctl.links.sim import SimLink
from gunctl.mqtt.commands import parse_device_command
from gunctl.profiles.loader import load_catalogue
from gunctl.profiles.plan import ExposureRefused, make_plan
from gunctl.requests import CommandError, SessionAction
from gunctl.specs.loader import get_spec, load_spec
from gunsim import Overheat, SimDevice

Trigger = Callable[[Path, pytest.MonkeyPatch], Awaitable[Any]]
CASES: dict[type[GunctlError], tuple[str, Trigger]] = {}


def case(error: type[GunctlError], reason: str) -> Callable[[Trigger], Trigger]:
    def register(trigger: Trigger) -> Trigger:
        CASES[error] = (reason, trigger)
        return trigger

    return register


@case(errors.StorageError, "storage")
async def _history_in_a_file(tmp: Path, _: pytest.MonkeyPatch) -> None:
    from gunctl.store.history import History

    (tmp / "file").write_text("not a folder")
    History(tmp / "file" / "history.sqlite3")


@case(errors.ConfigError, "invalid_configuration")
async def _bad_setting(tmp: Path, _: pytest.MonkeyPatch) -> None:
    (tmp / "gunctl.toml").write_text("intensity_cap = 7\n")
    load_settings(tmp / "gunctl.toml")


@case(errors.UnknownNameError, "unknown_name")
async def _unknown_spec(tmp: Path, _: pytest.MonkeyPatch) -> None:
    get_spec("gunctl-opne")


@case(InvalidFileError, "invalid_file")
async def _broken_spec(tmp: Path, _: pytest.MonkeyPatch) -> None:
    (tmp / "bad.yaml").write_text("name: bad\nfamily: [\n")
    load_spec(tmp / "bad.yaml")


@case(errors.LinkLostError, "link_lost")
async def _write_after_the_link_went(tmp: Path, _: pytest.MonkeyPatch) -> None:
    async with SimDevice(get_spec("gunctl-open"), clock=Clock()) as device:
        link = SimLink(device)
        await link.connect()
        await link.disconnect()
        await link.write(Endpoint.COMMAND, b"\x00", with_response=False)


@case(errors.LinkError, "link_error")
async def _write_where_the_gun_takes_no_writes(tmp: Path, _: pytest.MonkeyPatch) -> None:
    async with SimDevice(get_spec("gunctl-open"), clock=Clock()) as device:
        link = SimLink(device)
        await link.connect()
        try:
            await link.write(Endpoint.TELEMETRY, b"\x00", with_response=False)
        finally:
            await link.disconnect()


@case(errors.ConnectError, "connect_failed")
async def _other_connect_failure(tmp: Path, _: pytest.MonkeyPatch) -> None:
    raise connect_error("Pro (AA:BB)", BleakError("br-connection-canceled"))


@case(errors.DeviceNotFoundError, "device_not_found")
async def _not_found(tmp: Path, _: pytest.MonkeyPatch) -> None:
    raise connect_error("Pro (AA:BB)", BleakNotFoundError("Pro - AA:BB: Failed to connect"))


@case(errors.OutOfSlotsError, "out_of_connection_slots")
async def _no_slot(tmp: Path, _: pytest.MonkeyPatch) -> None:
    raise connect_error("Pro (AA:BB)", BleakOutOfConnectionSlotsError("no free slot"))


@case(errors.ConnectAbortedError, "connect_aborted")
async def _aborted(tmp: Path, _: pytest.MonkeyPatch) -> None:
    raise connect_error("Pro (AA:BB)", BleakAbortedError("interface busy"))


@case(errors.BluetoothUnavailableError, "bluetooth_unavailable")
async def _no_bluez(tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBUS_SYSTEM_BUS_ADDRESS", f"unix:path={tmp / 'no-bus'}")
    await scan(0.1)


@case(errors.ProxyError, "proxy_unusable")
async def _no_proxies(tmp: Path, _: pytest.MonkeyPatch) -> None:
    Proxies([])


@case(errors.NoSpecError, "no_spec")
async def _unmatched(tmp: Path, _: pytest.MonkeyPatch) -> None:
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    from gunctl.links.ble import pick_spec

    device = BLEDevice("AA:BB:CC:DD:EE:FF", "Kettle", None)
    adv = AdvertisementData("Kettle", {}, {}, [], None, -60, ())
    pick_spec(device, adv)


@case(errors.RequestRefusedError, "no_session")
async def _pause_without_a_session(tmp: Path, _: pytest.MonkeyPatch) -> None:
    spec = get_spec("gunctl-open")
    clock = Clock()
    async with SimDevice(spec, clock=clock) as device:
        link = SimLink(device)
        await link.connect()
        supervisor = Supervisor(spec, link, clock=clock)
        task = asyncio.create_task(supervisor.run())
        try:
            await supervisor.request(SessionAction("pause"))
        finally:
            await supervisor.close()
            await task


@case(CommandError, "not_json")
async def _not_json(tmp: Path, _: pytest.MonkeyPatch) -> None:
    parse_device_command(b"{start")


@case(errors.SafetyStopError, "safety_stop")
async def _overheating(tmp: Path, _: pytest.MonkeyPatch) -> None:
    import gunctl

    async with gunctl.simulate(time_scale=100, faults=[(20.0, Overheat(temperature_c=75))]) as gun:
        await gun.run("glute", side="left")


@case(ExposureRefused, "exposure_48h")
async def _over_the_48_hour_cap(tmp: Path, _: pytest.MonkeyPatch) -> None:
    import gunctl
    from gunctl.control.events import SessionCompleted, StepCompleted
    from gunctl.store.history import History

    catalogue = load_catalogue()
    plan = make_plan(catalogue.protocols["glute"], catalogue.muscles, get_spec("gunctl-open"))
    first = plan.steps[0]
    history = History(tmp / "history.sqlite3")  # an hour's massage on that side this morning
    history.begin(device="earlier", protocol="glute", simulated=True)
    worked = StepCompleted(
        at=3600.0,
        device="earlier",
        step_index=0,
        muscle=first.muscle,
        side=first.side,
        worked_s=3600.0,
    )
    history.record(worked)
    history.record(SessionCompleted(at=3600.0, device="earlier", worked_s=3600.0))
    async with gunctl.simulate(history=history) as gun:
        await gun.start("glute")


@case(errors.GunctlError, "plan_refused")
async def _cap_out_of_range(tmp: Path, _: pytest.MonkeyPatch) -> None:
    catalogue = load_catalogue()
    protocol = catalogue.protocols["glute"]
    make_plan(protocol, catalogue.muscles, get_spec("gunctl-open"), user_cap=1.5)


@pytest.mark.parametrize("error", list(CASES), ids=lambda e: e.__name__)
async def test_a_user_catches_it_by_class_and_reads_its_reason(
    error: type[GunctlError], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reason, trigger = CASES[error]
    with pytest.raises(error) as caught:
        await trigger(tmp_path, monkeypatch)
    assert caught.value.reason == reason
    assert isinstance(caught.value.advice, str)
    assert str(caught.value)


def test_every_public_error_has_a_case() -> None:
    public = {
        cls
        for _, cls in inspect.getmembers(errors, inspect.isclass)
        if issubclass(cls, GunctlError)
    }
    assert public - set(CASES) == set()


def test_the_connect_failures_a_user_acts_on_differently_stay_apart() -> None:
    made = [
        connect_error("Pro", cause)
        for cause in (
            BleakNotFoundError("x"),
            BleakOutOfConnectionSlotsError("x"),
            BleakAbortedError("x"),
        )
    ]
    assert [type(e) for e in made] == [
        errors.DeviceNotFoundError,
        errors.OutOfSlotsError,
        errors.ConnectAbortedError,
    ]
    assert len({e.advice for e in made}) == 3  # each says its own next step


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (errors.SafetyStopError("temperature", "motor at 61.0 °C"), EXIT_SAFETY),
        (errors.OutOfSlotsError("no slot"), EXIT_UNREACHABLE),
        (errors.LinkLostError("gone"), EXIT_UNREACHABLE),
        (errors.StorageError("read-only"), EXIT_STORAGE),
        (errors.RequestRefusedError("busy"), EXIT_INVALID),
        (errors.UnknownNameError("no spec"), EXIT_INVALID),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_the_command_line_maps_each_class_to_its_exit_code(error: GunctlError, code: int) -> None:
    assert exit_code_for(error) == code
