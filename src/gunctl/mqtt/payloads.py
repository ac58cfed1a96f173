"""What gunctl publishes about a device: its state, its telemetry, and command results.

The state and telemetry documents are built from the gun's public
:class:`~gunctl.state.GunState` (``DeviceSlot.state()``) and what only the
daemon knows about the slot (its kind, the saved selection, a problem that
made it give up); nothing here reads the Supervisor, writes to a device or
touches the network. The fields of the state document are listed in
:data:`STATE_FIELDS` and :data:`STEP_FIELDS`, and documented in docs/mqtt.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gunctl.daemon import DeviceSlot
    from gunctl.store.diary import DiarySummary

# The GunState fields the retained state document carries, as they are named there;
# a new GunState field reaches MQTT only when it is added here and documented.
STATE_FIELDS = (
    "model",
    "connected",
    "running",
    "phase",
    "paused",
    "waiting_for_head",
    "protocol",
    "protocol_title",
    "step",
    "session_remaining_s",
    "speed_ppm",
    "setpoint_ppm",
    "intensity",
    "motor_running",
    "battery_pct",
    "temperature_c",
    "force_n",
    "firmware",
    "last_safety_stop",
)
STEP_FIELDS = ("index", "of", "muscle", "side", "title", "head", "phase", "remaining_s")


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def device_state(slot: DeviceSlot) -> dict[str, Any]:
    """The retained ``<device>/state`` document."""
    state = slot.state()
    step = state.step.model_dump(include=set(STEP_FIELDS)) if state.step is not None else None
    return {
        "device": state.device,
        "kind": slot.kind,
        **state.model_dump(include=set(STATE_FIELDS)),
        "step": step,
        "fault": slot.ending.fault,
        "problem": slot.problem,
        "rssi": slot.rssi,
        "selected": slot.selected.model_dump(),
        "updated_at": now_iso(),
    }


def telemetry(slot: DeviceSlot) -> dict[str, Any] | None:
    """One ``<device>/telemetry`` message, or None while the device is not connected."""
    state = slot.state()
    if not state.connected:
        return None
    return {
        **state.telemetry,
        "setpoint_ppm": state.setpoint_ppm,
        "intensity": state.intensity,
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
