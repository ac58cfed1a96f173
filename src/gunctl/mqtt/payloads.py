"""What gunctl publishes about a device: its state, its telemetry, and command results.

These are plain JSON-able dicts built from what the Supervisor exposes; nothing
here writes to a device or touches the network.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gunctl.control.session import Phase
from gunctl.specs.models import Capabilities
from gunctl.specs.speed import Setpoint

if TYPE_CHECKING:
    from gunctl.daemon import DeviceSlot


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def intensity_of(setpoint: Setpoint, caps: Capabilities) -> float:
    """The share of the device's range (0..1) a setpoint runs at: the inverse of setpoint_for."""
    if setpoint.stopped:
        return 0.0
    if caps.speed is not None:
        low, high = caps.speed.min_ppm, caps.speed.max_ppm
    else:
        assert caps.levels_ppm is not None
        low, high = caps.levels_ppm[0], caps.levels_ppm[-1]
    if high <= low:
        return 1.0
    return round(max(0.0, min(1.0, (setpoint.ppm - low) / (high - low))), 3)


def _round(value: Any, digits: int = 1) -> Any:
    """Floats rounded, sets (fault flags) as sorted lists: what JSON can carry."""
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, set | frozenset):
        return sorted(value)
    return value


def device_state(slot: DeviceSlot) -> dict[str, Any]:
    """The retained ``<device>/state`` document."""
    device = slot.device
    supervisor = device.supervisor if device is not None else None
    session = supervisor.session if supervisor is not None else None
    running = supervisor is not None and supervisor.running
    step: dict[str, Any] | None = None
    if running and session is not None and session.step is not None:
        planned = session.step
        step = {
            "index": planned.index,
            "of": len(session.plan.steps),
            "muscle": planned.muscle,
            "side": planned.side,
            "head": planned.head.value,
            "phase": session.phase.value,
            "remaining_s": round(session.remaining_s, 1),
        }
    telemetry = supervisor.telemetry if supervisor is not None else None
    setpoint = supervisor.driver.setpoint if supervisor is not None else None
    stop = slot.last_safety_stop
    return {
        "device": slot.device_id,
        "kind": slot.kind,
        "model": slot.spec.title if slot.spec is not None else None,
        "connected": device is not None and device.connected,
        "running": running,
        "paused": bool(running and session is not None and session.paused is not None),
        "waiting_for_head": bool(
            running and session is not None and session.phase is Phase.HEAD_CHANGE
        ),
        "protocol": session.plan.protocol if running and session is not None else None,
        "step": step,
        "speed_ppm": telemetry.get("speed_ppm") if telemetry is not None else None,
        "setpoint_ppm": setpoint.ppm if setpoint is not None else 0,
        "intensity": (
            intensity_of(setpoint, slot.spec.capabilities)
            if setpoint is not None and slot.spec is not None
            else 0.0
        ),
        "battery_pct": _round(telemetry.get("battery_pct")) if telemetry is not None else None,
        "temperature_c": _round(telemetry.get("temperature_c")) if telemetry is not None else None,
        "force_n": _round(telemetry.get("force_n")) if telemetry is not None else None,
        "fault": slot.fault,
        "problem": slot.problem,
        "last_safety_stop": (
            {"rule": stop.rule, "message": stop.message, "at": round(stop.at, 3)}
            if stop is not None
            else None
        ),
        "firmware": supervisor.firmware if supervisor is not None else None,
        "rssi": device.rssi if device is not None else None,
        "selected": slot.selected.as_dict(),
        "updated_at": now_iso(),
    }


def telemetry(slot: DeviceSlot) -> dict[str, Any] | None:
    """One ``<device>/telemetry`` message, or None while the device is not connected."""
    device = slot.device
    if device is None or not device.connected:
        return None
    supervisor = device.supervisor
    values = {name: _round(value, 3) for name, value in supervisor.telemetry.values.items()}
    setpoint = supervisor.driver.setpoint
    return {
        **values,
        "setpoint_ppm": setpoint.ppm,
        "intensity": intensity_of(setpoint, device.spec.capabilities),
        "at": now_iso(),
    }


def result(
    command_id: str | int | None,
    *,
    device: str | None,
    action: str | None,
    error: str | None = None,
    reason: str | None = None,
    ignored: tuple[str, ...] = (),
    **extra: Any,
) -> dict[str, Any]:
    """A ``<device>/result`` message: ``ok`` with details, or ``ok: false`` with why.

    ``ignored`` names the fields a lenient stop passed over.
    """
    body: dict[str, Any] = {
        "id": command_id,
        "ok": error is None,
        "device": device,
        "action": action,
    }
    if error is not None:
        body["error"] = error
        body["reason"] = reason
    if ignored:
        body["ignored"] = list(ignored)
    body.update(extra)
    return body
