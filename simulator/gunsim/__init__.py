"""gunsim: the device side of every firmware spec, in software.

``SimDevice`` plays one massage gun (motor, load, heat, battery, firmware
watchdog and cutoffs, fault injection) on a ``gunctl.clock.Clock``;
``gunctl.links.sim.SimLink`` connects gunctl to it in-process.
"""

from gunsim.device import DeviceState, LinkRefused, Load, SimDevice
from gunsim.faults import (
    FAULT_ADAPTER,
    ClearFaults,
    CorruptFrames,
    DelayNotifications,
    DropLink,
    DuplicateFrames,
    Fault,
    LoseWrites,
    LowBattery,
    Overheat,
    RefuseConnections,
    ReorderNotifications,
    Silence,
    SlowAcks,
    Stall,
    StuckMotor,
    TruncateFrames,
)
from gunsim.params import PARAMS, PhysicsParams, params_for
from gunsim.person import RandomPerson, ScriptedPerson

__all__ = [
    "FAULT_ADAPTER",
    "PARAMS",
    "ClearFaults",
    "CorruptFrames",
    "DelayNotifications",
    "DeviceState",
    "DropLink",
    "DuplicateFrames",
    "Fault",
    "LinkRefused",
    "Load",
    "LoseWrites",
    "LowBattery",
    "Overheat",
    "PhysicsParams",
    "RandomPerson",
    "RefuseConnections",
    "ReorderNotifications",
    "ScriptedPerson",
    "Silence",
    "SimDevice",
    "SlowAcks",
    "Stall",
    "StuckMotor",
    "TruncateFrames",
    "params_for",
]
