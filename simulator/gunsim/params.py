"""Physical parameters of each simulated device family.

A firmware spec says what a device's protocol is; it says nothing about how
heavy its rotor is or how fast its motor warms up. Those numbers live here, one
``PhysicsParams`` per family, keyed by spec name. Each number says where it
comes from: a published figure, or a stated assumption chosen so the simulated
device behaves like its class (how long a battery lasts, how warm a motor gets
in ordinary use, how quickly it overheats when pressed into a stall).

Forces, stall limits, speed ranges, the thermal cutoff and the timers (keepalive
watchdog, auto-off) come from the firmware spec itself, never from here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MotorParams(_Params):
    # First-order lag of the speed towards its target (rotor and eccentric inertia).
    time_constant_s: float = Field(gt=0)
    # The fastest the speed may change, up or down (the motor driver's soft start).
    slew_ppm_per_s: float = Field(gt=0)
    # Current drawn with no load at reference_ppm; scales linearly with speed.
    no_load_current_a: float = Field(ge=0)
    reference_ppm: float = Field(gt=0)
    # Current drawn with the rotor held still (at the spec's stall force).
    stall_current_a: float = Field(gt=0)
    # Resistance that turns current into heat in the winding (I^2 R).
    winding_resistance_ohm: float = Field(gt=0)
    # Bearing, eccentric and eddy losses at reference_ppm; scale with speed squared.
    mechanical_loss_w: float = Field(ge=0)


class ThermalParams(_Params):
    ambient_c: float = 25.0  # a room; the motor starts here
    # Heat capacity of the motor and the metal around it, in joules per kelvin.
    heat_capacity_j_per_k: float = Field(gt=0)
    # Thermal resistance to the air: degrees above ambient per watt in steady state.
    resistance_k_per_w: float = Field(gt=0)
    # Below the cutoff by this much the firmware clears its overtemp flag.
    hysteresis_c: float = Field(default=5.0, ge=0)

    @property
    def time_constant_s(self) -> float:
        return self.heat_capacity_j_per_k * self.resistance_k_per_w


class BatteryParams(_Params):
    voltage_v: float = Field(gt=0)  # nominal pack voltage
    capacity_wh: float = Field(gt=0)
    idle_w: float = Field(ge=0)  # radio and microcontroller with the motor off
    start_pct: float = Field(default=100.0, ge=0, le=100)
    low_pct: float = Field(default=10.0, ge=0, le=100)  # low_battery flag below this


class FirmwareParams(_Params):
    # How often the firmware's own loop runs when it streams nothing.
    tick_s: float = Field(default=0.05, gt=0)
    # A stall that lasts this long makes the firmware cut the motor.
    stall_cutoff_s: float = Field(default=2.0, gt=0)
    # Packed major*100 + minor*10 + patch, for specs with a version report.
    version: int = Field(default=100, ge=0)


class PhysicsParams(_Params):
    motor: MotorParams
    thermal: ThermalParams
    battery: BatteryParams
    firmware: FirmwareParams = FirmwareParams()
    # Longest internal integration step when the state is advanced.
    max_step_s: float = Field(default=0.05, gt=0)


PARAMS: dict[str, PhysicsParams] = {
    # Theragun PRO / Elite / Prime (gen 4). The protocol spec takes its stall
    # force (30 lbf, the Prime's published figure) and speed range from
    # Therabody's published figures; the rest is assumed for a brushless gun
    # with a 16 mm stroke.
    "theragun-gen4": PhysicsParams(
        motor=MotorParams(
            time_constant_s=0.25,  # assumption: a 16 mm stroke eccentric is a heavy rotor
            slew_ppm_per_s=6000,  # assumption: soft start reaches 2400 in about 0.4 s
            no_load_current_a=0.6,  # assumption: about 10 W free-running at 2400 ppm
            reference_ppm=2400,  # the top of the published 1750..2400 range
            stall_current_a=6.0,  # assumption: driver current limit of a 100 W class motor
            winding_resistance_ohm=0.8,  # assumption
            mechanical_loss_w=4.0,  # assumption
        ),
        thermal=ThermalParams(
            heat_capacity_j_per_k=80,  # assumption: motor plus its aluminium mount
            resistance_k_per_w=3.0,  # assumption: a warm but not hot body in ordinary use
        ),
        battery=BatteryParams(
            voltage_v=16.8,  # assumption: a 4S lithium-ion pack
            # assumption: sized so that running at 2100 ppm with a light 20 N lean
            # lasts about the published 120 minutes of the Elite and Prime
            capacity_wh=45.0,
            idle_w=0.05,  # assumption: BLE radio and microcontroller
        ),
        firmware=FirmwareParams(version=412),  # assumption: "4.1.2", as the spec's vector
    ),
    # gunctl-open: a maker-built gun with a 24 V brushless motor and an ESP32.
    "gunctl-open": PhysicsParams(
        motor=MotorParams(
            time_constant_s=0.15,  # assumption: a small brushless motor under speed control
            slew_ppm_per_s=12000,  # assumption: the reference firmware's ramp limit
            no_load_current_a=0.5,  # assumption: 12 W free-running at 3200 ppm on 24 V
            reference_ppm=3200,  # the spec's max_ppm
            stall_current_a=8.0,  # assumption: the reference driver's current limit
            winding_resistance_ohm=0.9,  # assumption
            mechanical_loss_w=5.0,  # assumption
        ),
        thermal=ThermalParams(
            heat_capacity_j_per_k=60,  # assumption: a 36 mm motor can with its mount
            # assumption: about 45 C after 15 minutes at 2400 ppm with a 40 N lean
            resistance_k_per_w=4.0,
        ),
        battery=BatteryParams(
            voltage_v=24.0,  # assumption: 6S lithium-ion, the common maker choice
            capacity_wh=60.0,  # assumption: 6S1P of 2500 mAh cells
            idle_w=0.25,  # assumption: an ESP32 with BLE connected draws about 70 mA at 3.3 V
        ),
        firmware=FirmwareParams(version=102),  # assumption: "1.0.2", as the spec's vector
    ),
    # basic-5level: the generic budget gun.
    "basic-5level": PhysicsParams(
        motor=MotorParams(
            time_constant_s=0.3,  # assumption: a brushed motor with a cheap, slow driver
            slew_ppm_per_s=5000,  # assumption
            no_load_current_a=0.7,  # assumption: brushed motors waste more free-running
            reference_ppm=3200,  # the spec's top level
            stall_current_a=5.0,  # assumption: a cheap driver's current limit
            winding_resistance_ohm=1.5,  # assumption: brushed, smaller wire
            mechanical_loss_w=6.0,  # assumption: brushes and a plain bearing
        ),
        thermal=ThermalParams(
            heat_capacity_j_per_k=45,  # assumption: a smaller motor in a plastic body
            # assumption: a plastic body sheds heat poorly; about 50 C after 15 minutes
            # at level 3 with a 30 N lean, under its 65 C cutoff
            resistance_k_per_w=3.0,
        ),
        battery=BatteryParams(
            voltage_v=24.0,  # the voltage these guns' listings commonly state
            capacity_wh=60.0,  # 2500 mAh at 24 V, the capacity these listings commonly state
            idle_w=0.1,  # assumption
        ),
    ),
}

# For a spec with no entry: a middling gun; every number is an assumption.
DEFAULT_PARAMS = PhysicsParams(
    motor=MotorParams(
        time_constant_s=0.2,
        slew_ppm_per_s=8000,
        no_load_current_a=0.6,
        reference_ppm=3000,
        stall_current_a=6.0,
        winding_resistance_ohm=1.0,
        mechanical_loss_w=5.0,
    ),
    thermal=ThermalParams(heat_capacity_j_per_k=60, resistance_k_per_w=4.0),
    battery=BatteryParams(voltage_v=24.0, capacity_wh=50.0, idle_w=0.1),
)


def params_for(spec_name: str) -> PhysicsParams:
    return PARAMS.get(spec_name, DEFAULT_PARAMS)
