"""The MQTT state document is GunState's fields plus the daemon's own, as docs/mqtt.md shows."""

from __future__ import annotations

import json
import re
from pathlib import Path

from gunctl.daemon import DeviceSlot
from gunctl.mqtt.payloads import STATE_FIELDS, STEP_FIELDS, device_state
from gunctl.specs.loader import get_spec
from gunctl.state import GunState, StepState

DOCS = Path(__file__).resolve().parent.parent / "docs" / "mqtt.md"
DAEMON_FIELDS = {"device", "kind", "fault", "problem", "rssi", "selected", "updated_at"}


def documented() -> dict[str, object]:
    text = DOCS.read_text(encoding="utf-8").split("The state document:", 1)[1]
    match = re.search(r"```json\n(.*?)```", text, re.S)
    assert match is not None
    return dict(json.loads(match.group(1)))


def test_the_state_fields_are_gun_state_fields() -> None:
    assert set(STATE_FIELDS) <= set(GunState.model_fields)
    assert set(STEP_FIELDS) <= set(StepState.model_fields)


def test_the_documented_state_is_what_is_published() -> None:
    slot = DeviceSlot("sim-desk-1", "sim", "1", get_spec("gunctl-open"))
    published = device_state(slot)
    example = documented()
    assert set(published) == set(example) == set(STATE_FIELDS) | DAEMON_FIELDS
    step = example["step"]
    assert isinstance(step, dict)
    assert set(step) == set(STEP_FIELDS)
    assert (published["phase"], published["connected"], published["step"]) == ("idle", False, None)
