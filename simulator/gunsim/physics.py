"""The hardware: motor, load, heat and battery, with no notion of time of its own.

The physics is advanced only when someone asks (the firmware's loop, a host
write, a test reading the state), by ``step(dt, force_n)`` with the applied
force held for the step. Within a step the motor speed is solved exactly (a
slew-limited ramp, then a first-order exponential approach to its target), and
so is the motor temperature, so a long step costs no more than a short one and
no accuracy is lost to the step size except where the force changes.

The model, one line each:

- the driver asks for ``drive_ppm`` (0: off); a discrete device snaps it to
  the nearest of its levels;
- a force F on the head loads the motor by ``load = min(1, F / stall_force_n)``;
  the speed target is ``drive_ppm * (1 - load)``: at the stall force the rotor
  stops while still driven;
- the speed approaches its target with time constant ``time_constant_s``, never
  faster than ``slew_ppm_per_s``;
- driven current is ``no_load_current_a * speed / reference_ppm +
  stall_current_a * load``; an undriven motor draws nothing;
- heat is ``I^2 R`` in the winding plus mechanical losses growing with speed
  squared; the temperature follows ``C dT/dt = heat - (T - ambient) / R_th``;
- the battery gives ``V * I`` to the motor plus ``idle_w`` to the electronics;
  when it is empty the driver browns out and the motor coasts down.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from gunctl.heads import Head
from gunctl.specs.models import DeviceSpec
from gunsim.params import PhysicsParams

# A spec with no stall force: assume a sturdy gun (most published figures are 130..270 N).
DEFAULT_STALL_FORCE_N = 200.0
# Closer than this to its target the motor counts as settled (0.01 ppm: far below any reading).
SETTLED_PPM = 0.01


def approach(x: float, target: float, dt: float, tau: float, slew: float) -> float:
    """Where a slew-limited first-order lag from ``x`` towards ``target`` is after ``dt``.

    The exponential would ask for a rate of ``|target - x| / tau``; while that is
    more than ``slew`` the value ramps at ``slew``, then the exponential takes over.
    """
    error = target - x
    sign = 1.0 if error >= 0 else -1.0
    linear_span = abs(error) - slew * tau
    if linear_span > 0:
        t_linear = linear_span / slew
        if dt <= t_linear:
            return x + sign * slew * dt
        x += sign * linear_span
        dt -= t_linear
        error = target - x
    return target - error * math.exp(-dt / tau)


@dataclass
class Physics:
    spec: DeviceSpec
    params: PhysicsParams
    drive_ppm: float = 0.0
    speed_ppm: float = 0.0
    force_n: float = 0.0
    current_a: float = 0.0
    temperature_c: float = 0.0
    energy_wh: float = 0.0
    jammed: bool = False  # the rotor is held still whatever the force (a fault)
    driver_stuck: bool = False  # the driver ignores any drive lower than it has (a fault)
    head: Head | Literal["none"] = Head.BALL  # the attachment fitted

    def __post_init__(self) -> None:
        self.temperature_c = self.params.thermal.ambient_c
        self.energy_wh = self.params.battery.capacity_wh * self.params.battery.start_pct / 100

    # -- what the driver and the firmware see --------------------------------

    @property
    def stall_force_n(self) -> float:
        return self.spec.capabilities.stall_force_n or DEFAULT_STALL_FORCE_N

    @property
    def battery_pct(self) -> float:
        return 100.0 * self.energy_wh / self.params.battery.capacity_wh

    @battery_pct.setter
    def battery_pct(self, value: float) -> None:
        self.energy_wh = self.params.battery.capacity_wh * max(0.0, min(100.0, value)) / 100

    @property
    def browned_out(self) -> bool:
        return self.energy_wh <= 0.0

    @property
    def load(self) -> float:
        """How much of the motor's torque the load takes, 0 (free) to 1 (stalled)."""
        if self.jammed:
            return 1.0
        return min(1.0, max(0.0, self.force_n) / self.stall_force_n)

    @property
    def stalled(self) -> bool:
        return self.drive_ppm > 0 and self.load >= 1.0

    def snap(self, ppm: float) -> float:
        """The drive a discrete device really applies: its nearest level (0 stays off)."""
        levels = self.spec.capabilities.levels_ppm
        if ppm <= 0:
            return 0.0
        if levels is None:
            return float(ppm)
        return float(min(levels, key=lambda level: abs(level - ppm)))

    def set_drive(self, ppm: float) -> None:
        """What the firmware asks of the driver; a stuck driver stays on at its drive."""
        if self.browned_out:
            self.drive_ppm = 0.0
        elif not (self.driver_stuck and self.drive_ppm > 0):
            self.drive_ppm = self.snap(ppm)

    def cut_power(self) -> None:
        """Open the battery switch: the only thing that stops even a stuck driver."""
        self.drive_ppm = 0.0

    # -- time ----------------------------------------------------------------

    def target_ppm(self) -> float:
        return self.drive_ppm * (1.0 - self.load)

    def _current(self, speed: float) -> float:
        if self.drive_ppm <= 0:
            return 0.0
        motor = self.params.motor
        return motor.no_load_current_a * speed / motor.reference_ppm + (
            motor.stall_current_a * self.load
        )

    def steady_s(self, force_n: float) -> float:
        """How long one step from here with ``force_n`` on the head is as exact as many short ones.

        With the motor settled on its target speed under that force, the
        current, the heat and the battery's draw stay constant, and ``step``
        solves the temperature and the charge exactly however long the step,
        until the battery runs out (the driver browns out then, mid-step with a
        longer one). While the speed still changes: 0, and the caller keeps its
        steps short. The force is taken on now, as the step would.
        """
        self.force_n = force_n
        if abs(self.speed_ppm - self.target_ppm()) > SETTLED_PPM:
            return 0.0
        battery = self.params.battery
        power_w = battery.voltage_v * self._current(self.speed_ppm) + battery.idle_w
        if self.browned_out or power_w <= 0:
            return math.inf
        return 3600 * self.energy_wh / power_w

    def step(self, dt: float, force_n: float) -> None:
        """Advance by ``dt`` seconds with ``force_n`` on the head throughout."""
        if dt <= 0:
            self.force_n = force_n
            self.current_a = self._current(self.speed_ppm)
            return
        motor, thermal, battery = self.params.motor, self.params.thermal, self.params.battery
        self.force_n = force_n
        start_speed = self.speed_ppm
        start_current = self._current(start_speed)
        self.speed_ppm = (
            0.0
            if self.jammed
            else max(
                0.0,
                approach(
                    start_speed, self.target_ppm(), dt, motor.time_constant_s, motor.slew_ppm_per_s
                ),
            )
        )
        self.current_a = self._current(self.speed_ppm)
        current = (start_current + self.current_a) / 2
        mean_speed = (start_speed + self.speed_ppm) / 2

        heat_w = (
            current**2 * motor.winding_resistance_ohm
            + motor.mechanical_loss_w * (mean_speed / motor.reference_ppm) ** 2
        )
        steady = thermal.ambient_c + heat_w * thermal.resistance_k_per_w
        decay = math.exp(-dt / thermal.time_constant_s)
        self.temperature_c = steady + (self.temperature_c - steady) * decay

        used_wh = (battery.voltage_v * current + battery.idle_w) * dt / 3600
        self.energy_wh = max(0.0, self.energy_wh - used_wh)
        if self.browned_out:
            self.drive_ppm = 0.0
            self.current_a = 0.0
