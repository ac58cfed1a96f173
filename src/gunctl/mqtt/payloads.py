"""What gunctl publishes about a device: its state, its telemetry, and command results.

These are plain JSON-able dicts built from what the Supervisor exposes; nothing
here writes to a device or touches the network.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from gunctl.control.session import Phase, Session
from gunctl.specs.models import Capabilities, DeviceSpec
from gunctl.specs.speed import Setpoint

if TYPE_CHECKING:
    from gunctl.control.supervisor import Supervisor
    from gunctl.daemon import DeviceSlot
    from gunctl.store.diary import DiarySummary


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


# What a person would call the state of a gun, one word each (Home Assistant's
# "Session" enum sensor). The order is the order of the documentation.
PHASES = ("idle", "running", "paused", "waiting_for_head", "resting", "done", "safety_stop")


def session_phase(slot: DeviceSlot, session: Session | None) -> str:
    """One of :data:`PHASES`: the session in progress, or how the last one ended."""
    if session is None:
        if slot.fault:
            return "safety_stop"
        return "done" if slot.completed else "idle"
    if session.paused is not None:
        return "paused"
    if session.phase is Phase.HEAD_CHANGE:
        return "waiting_for_head"
    return "resting" if session.phase is Phase.REST else "running"


def _step(session: Session) -> dict[str, Any] | None:
    planned = session.step
    if planned is None:
        return None
    return {
        "index": planned.index,
        "of": len(session.plan.steps),
        "muscle": planned.muscle,
        "side": planned.side,
        "title": f"{planned.muscle_title} ({planned.side})",
        "head": planned.head.value,
        "phase": session.phase.value,
        "remaining_s": round(session.remaining_s, 1),
    }


def _session(session: Session | None) -> dict[str, Any]:
    """The fields that describe the session in progress; all empty when there is none."""
    if session is None:
        return {
            "paused": False,
            "waiting_for_head": False,
            "protocol": None,
            "protocol_title": None,
            "step": None,
            "session_remaining_s": None,
        }
    return {
        "paused": session.paused is not None,
        "waiting_for_head": session.phase is Phase.HEAD_CHANGE,
        "protocol": session.plan.protocol,
        "protocol_title": session.plan.title,
        "step": _step(session),
        "session_remaining_s": round(session.session_remaining_s, 1),
    }


def _measured(supervisor: Supervisor | None, spec: DeviceSpec | None) -> dict[str, Any]:
    """What the gun reports and what it was last told to do."""
    if supervisor is None:
        return {
            "speed_ppm": None,
            "setpoint_ppm": 0,
            "intensity": 0.0,
            "motor_running": False,
            "battery_pct": None,
            "temperature_c": None,
            "force_n": None,
            "firmware": None,
        }
    telemetry = supervisor.telemetry
    setpoint = supervisor.driver.setpoint
    speed = telemetry.get("speed_ppm")
    return {
        "speed_ppm": speed,
        "setpoint_ppm": setpoint.ppm,
        "intensity": intensity_of(setpoint, spec.capabilities) if spec is not None else 0.0,
        # a gun that reports its speed is running while it turns; one that does not, while
        # it is told to
        "motor_running": speed > 0 if speed is not None else not setpoint.stopped,
        "battery_pct": _round(telemetry.get("battery_pct")),
        "temperature_c": _round(telemetry.get("temperature_c")),
        "force_n": _round(telemetry.get("force_n")),
        "firmware": supervisor.firmware,
    }


def device_state(slot: DeviceSlot) -> dict[str, Any]:
    """The retained ``<device>/state`` document."""
    device = slot.device
    supervisor = device.supervisor if device is not None else None
    running = supervisor is not None and supervisor.running
    session = supervisor.session if running and supervisor is not None else None
    stop = slot.last_safety_stop
    return {
        "device": slot.device_id,
        "kind": slot.kind,
        "model": slot.spec.title if slot.spec is not None else None,
        "connected": device is not None and device.connected,
        "running": running,
        "phase": session_phase(slot, session),
        **_session(session),
        **_measured(supervisor, slot.spec),
        "fault": slot.fault,
        "problem": slot.problem,
        "last_safety_stop": (
            {"rule": stop.rule, "message": stop.message, "at": round(stop.at, 3)}
            if stop is not None
            else None
        ),
        "rssi": device.rssi if device is not None else None,
        "selected": slot.selected.model_dump(),
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


REFUSED = "command_refused"  # the one event on a gun's event topic not from its Supervisor


def refusal_event(device_id: str, result: dict[str, Any]) -> dict[str, Any]:
    """A command a gun's lane took and refused, as an event: for automations to react to."""
    return {
        "type": REFUSED,
        "device": device_id,
        "action": result["action"],
        "reason": result["reason"],
        "message": result["error"],
        "id": result["id"],
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


def diary(summaries: Mapping[str, DiarySummary]) -> dict[str, Any] | None:
    """The symptom diary's document: its summary for real and for simulated sessions.

    Each holds the latest scores before and after (``pain``, ``reach``,
    ``recorded_at``), this week's minutes and sessions, and the ``refusal``
    (``rule``, ``message``, ``advice``) while a diary rule asks for a
    professional, else null. None until the daemon has first read the diary.
    """
    if not summaries:
        return None
    return {kind: summary.model_dump(mode="json") for kind, summary in summaries.items()}
