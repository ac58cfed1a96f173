"""gunsim: the device side of every firmware spec, in software.

``SimDevice`` plays one massage gun (motor, load, heat, battery, firmware
watchdog and cutoffs, fault injection) on a ``gunctl.clock.Clock``;
``gunctl.links.sim.SimLink`` connects gunctl to it in-process.
"""

from gunsim.device import DeviceState, LinkRefused, Load, SimDevice
from gunsim.params import PARAMS, PhysicsParams, params_for

__all__ = [
    "PARAMS",
    "DeviceState",
    "LinkRefused",
    "Load",
    "PhysicsParams",
    "SimDevice",
    "params_for",
]
