"""gunctl: a controller for percussive massage guns over Bluetooth LE.

Drive a gun from Python in a few lines::

    import asyncio
    import gunctl

    async def main() -> None:
        async with gunctl.simulate("gunctl-open", time_scale=50) as gun:
            print(await gun.run("glute", side="left"))

    asyncio.run(main())

:func:`simulate` and :func:`connect` give a :class:`Gun`; :class:`GunState` is
what ``gun.state()`` returns; every error gunctl raises on purpose is a
:class:`GunctlError`. The names in ``__all__`` are the public API; every
other module and name is internal and may change. See docs/python.md.

gunctl is a device controller, not medical advice.
"""

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from gunctl.control.events import (
        Event,
        HeadChangeRequired,
        SafetyStop,
        SessionAborted,
        SessionCompleted,
        SessionStarted,
        StepStarted,
    )
    from gunctl.datafile import InvalidFileError
    from gunctl.errors import (
        BluetoothUnavailableError,
        ConfigError,
        ConnectAbortedError,
        ConnectError,
        DeviceNotFoundError,
        GunctlError,
        LinkError,
        LinkLostError,
        NoSpecError,
        OutOfSlotsError,
        ProxyError,
        RequestRefusedError,
        SafetyStopError,
        StorageError,
        UnknownNameError,
    )
    from gunctl.gun import Gun, Outcome, connect, simulate
    from gunctl.state import GunState, SafetyStopState, StepState
    from gunctl.store.diary import DiarySummary

_PUBLIC = {  # each public name, and the module that defines it, imported on first use
    "BluetoothUnavailableError": "gunctl.errors",
    "ConfigError": "gunctl.errors",
    "connect": "gunctl.gun",
    "ConnectAbortedError": "gunctl.errors",
    "ConnectError": "gunctl.errors",
    "DeviceNotFoundError": "gunctl.errors",
    "DiarySummary": "gunctl.store.diary",
    "Event": "gunctl.control.events",
    "Gun": "gunctl.gun",
    "GunctlError": "gunctl.errors",
    "GunState": "gunctl.state",
    "HeadChangeRequired": "gunctl.control.events",
    "InvalidFileError": "gunctl.datafile",
    "LinkError": "gunctl.errors",
    "LinkLostError": "gunctl.errors",
    "NoSpecError": "gunctl.errors",
    "Outcome": "gunctl.gun",
    "OutOfSlotsError": "gunctl.errors",
    "ProxyError": "gunctl.errors",
    "RequestRefusedError": "gunctl.errors",
    "SafetyStop": "gunctl.control.events",
    "SafetyStopError": "gunctl.errors",
    "SafetyStopState": "gunctl.state",
    "SessionAborted": "gunctl.control.events",
    "SessionCompleted": "gunctl.control.events",
    "SessionStarted": "gunctl.control.events",
    "simulate": "gunctl.gun",
    "StepStarted": "gunctl.control.events",
    "StepState": "gunctl.state",
    "StorageError": "gunctl.errors",
    "UnknownNameError": "gunctl.errors",
}


def __getattr__(name: str) -> Any:
    """Import a public name on first use: ``gunctl --help`` need not load the control loop."""
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'gunctl' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "BluetoothUnavailableError",
    "ConfigError",
    "ConnectAbortedError",
    "ConnectError",
    "DeviceNotFoundError",
    "DiarySummary",
    "Event",
    "Gun",
    "GunState",
    "GunctlError",
    "HeadChangeRequired",
    "InvalidFileError",
    "LinkError",
    "LinkLostError",
    "NoSpecError",
    "OutOfSlotsError",
    "Outcome",
    "ProxyError",
    "RequestRefusedError",
    "SafetyStop",
    "SafetyStopError",
    "SafetyStopState",
    "SessionAborted",
    "SessionCompleted",
    "SessionStarted",
    "StepStarted",
    "StepState",
    "StorageError",
    "UnknownNameError",
    "__version__",
    "connect",
    "simulate",
]
