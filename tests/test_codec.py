"""The codec: golden vectors both ways, round trips, and hostile bytes."""

from __future__ import annotations

import binascii
import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gunctl.specs.codec import (
    Codec,
    DecodeError,
    DecodeFailure,
    EncodeError,
    checksum,
    decode_battery_level,
    encode_battery_level,
)
from gunctl.specs.loader import load_spec, load_specs
from gunctl.specs.messages import (
    COMMAND_ADAPTER,
    REPORT_ADAPTER,
    SetLevel,
    SetSpeed,
    Status,
    Stop,
    Version,
)
from gunctl.specs.models import ChecksumKind, DeviceSpec, Direction, FieldType, hex_to_bytes

DATA = Path(__file__).parent / "data"
SPECS = load_specs()
ALL_SPECS = [*SPECS.values(), load_spec(DATA / "specs" / "crc8-family.yaml")]
VECTORS = [
    pytest.param(spec, v, id=f"{spec.name}-{i}")
    for spec in SPECS.values()
    for i, v in enumerate(spec.vectors)
]


@pytest.mark.parametrize(("spec", "vector"), VECTORS)
def test_golden_vector_both_ways(spec: DeviceSpec, vector) -> None:
    codec = Codec(spec)
    data = hex_to_bytes(vector.hex)
    if vector.direction is Direction.HOST:
        message = COMMAND_ADAPTER.validate_python(vector.message)
        assert codec.encode_command(message) == data
        assert codec.decode_command(data) == message
    else:
        report = REPORT_ADAPTER.validate_python(vector.message)
        assert codec.encode_report(report) == data
        assert codec.decode_report(data) == report


def test_theragun_published_frames() -> None:
    codec = Codec(SPECS["theragun-gen4"])
    assert codec.encode_command(SetSpeed(ppm=2400)).hex(" ").upper() == "AA 70 01 03 09 60 03"
    assert codec.encode_command(Stop()).hex(" ").upper() == "AA 07 01 03 00 00 03"
    # the stop frame is the more specific meaning of opcode 01 with 0 rpm
    assert codec.decode_command(bytes.fromhex("AA07010300 0003".replace(" ", ""))) == Stop()


def test_theragun_version_unpacks() -> None:
    report = Codec(SPECS["theragun-gen4"]).decode_report(
        hex_to_bytes("BB C7 20 0A" + " 00" * 8 + " 01 9C")
    )
    assert isinstance(report, Version)
    assert str(report) == "4.1.2"


def test_undocumented_bytes_never_reach_typed_fields() -> None:
    codec = Codec(SPECS["theragun-gen4"])
    frame = bytearray(codec.encode_report(Status(running=True, speed_ppm=2000)))
    frame[5:13] = bytes([0x55] * 8)  # whatever force or battery might be hidden there
    frame[1] = checksum(ChecksumKind.SUM8, bytes(frame[2:]))
    report = codec.decode_report(bytes(frame))
    assert isinstance(report, Status)
    assert report.force_n is None
    assert report.battery_pct is None
    assert report.undocumented == {"unknown": "55" * 8}


def test_crc16_matches_an_independent_implementation() -> None:
    frame = Codec(SPECS["gunctl-open"]).encode_command(SetSpeed(ppm=1234))
    assert int.from_bytes(frame[-2:], "little") == binascii.crc_hqx(frame[:-2], 0xFFFF)


def test_crc8_check_value() -> None:
    # CRC-8/SMBUS check value for "123456789"
    assert checksum(ChecksumKind.CRC8, b"123456789") == 0xF4
    assert checksum(ChecksumKind.CRC16_CCITT, b"123456789") == 0x29B1


@pytest.mark.parametrize(
    ("spec_name", "command"),
    [
        ("theragun-gen4", SetSpeed(ppm=3585)),
        ("gunctl-open", SetSpeed(ppm=9000)),
        ("basic-5level", SetLevel(level=6)),
    ],
)
def test_setpoint_above_firmware_limit_is_refused_both_ways(spec_name: str, command) -> None:
    spec = SPECS[spec_name]
    codec = Codec(spec)
    with pytest.raises(EncodeError):
        codec.encode_command(command)
    # a device-side decode of such bytes is refused too, so the simulator never obeys it
    raw = _force_encode(spec, command)
    with pytest.raises(DecodeError) as err:
        codec.decode_command(raw)
    assert err.value.reason is DecodeFailure.BAD_VALUE


def _force_encode(spec: DeviceSpec, command) -> bytes:
    """Build the frame the checks would refuse, by encoding under a laxer copy of the spec."""
    caps = spec.capabilities
    if caps.speed is not None:
        lax = caps.model_copy(
            update={"speed": caps.speed.model_copy(update={"firmware_max_ppm": 60000})}
        )
    else:
        lax = caps.model_copy(update={"levels_ppm": [*caps.levels_ppm, 3400, 3600, 3800]})
    return Codec(spec.model_copy(update={"capabilities": lax})).encode_command(command)


def test_wrong_speed_model_is_refused() -> None:
    with pytest.raises(EncodeError):
        Codec(SPECS["basic-5level"]).encode_command(SetSpeed(ppm=2000))
    with pytest.raises(EncodeError):
        Codec(SPECS["gunctl-open"]).encode_command(SetLevel(level=2))


@pytest.mark.parametrize(
    ("spec_name", "mangle", "reason"),
    [
        ("gunctl-open", lambda b: b[:3], DecodeFailure.TOO_SHORT),
        ("gunctl-open", lambda b: b"\x00" + b[1:], DecodeFailure.BAD_HEADER),
        ("gunctl-open", lambda b: b[:-1] + bytes([b[-1] ^ 0xFF]), DecodeFailure.BAD_CHECKSUM),
        ("gunctl-open", lambda b: b[:2] + bytes([b[2] + 1]) + b[3:], DecodeFailure.BAD_LENGTH),
        (
            "theragun-gen4",
            lambda b: b[:4] + bytes([b[4] ^ 0x01]) + b[5:],
            DecodeFailure.BAD_CHECKSUM,
        ),
        ("basic-5level", lambda b: b[:-1] + bytes([b[-1] ^ 0x10]), DecodeFailure.BAD_CHECKSUM),
    ],
)
def test_damaged_frames_give_typed_errors(spec_name, mangle, reason) -> None:
    codec = Codec(SPECS[spec_name])
    good = codec.encode_report(Status(running=True, speed_ppm=2000, level=2, faults=frozenset()))
    with pytest.raises(DecodeError) as err:
        codec.decode_report(mangle(good))
    assert err.value.reason is reason


def test_battery_service_level() -> None:
    assert decode_battery_level(encode_battery_level(87.4)) == 87.0
    with pytest.raises(DecodeError):
        decode_battery_level(b"\x65")
    with pytest.raises(DecodeError):
        decode_battery_level(b"")


# -- property tests -----------------------------------------------------------


def _raw_range(field) -> st.SearchStrategy[int]:
    bits = field.type.size * 8
    if field.type.signed:
        return st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    return st.integers(0, 2**bits - 1)


@st.composite
def commands(draw, spec: DeviceSpec):
    kind = draw(st.sampled_from(sorted(spec.commands)))
    if kind == "set_speed":
        assert spec.capabilities.speed is not None
        return SetSpeed(ppm=draw(st.integers(1, spec.capabilities.speed.firmware_max_ppm)))
    if kind == "set_level":
        assert spec.capabilities.levels_ppm is not None
        return SetLevel(level=draw(st.integers(1, len(spec.capabilities.levels_ppm))))
    return COMMAND_ADAPTER.validate_python({"kind": kind})


@st.composite
def reports(draw, spec: DeviceSpec):
    """Any report the spec can carry, built from raw wire values so scaling is exact."""
    kind = draw(st.sampled_from(sorted(spec.reports)))
    values: dict[str, object] = {"kind": kind}
    undocumented: dict[str, object] = {}
    for field in spec.reports[kind].fields:
        if field.const is not None:
            continue
        if field.type is FieldType.BYTES:
            undocumented[field.name] = draw(
                st.binary(min_size=field.width, max_size=field.width)
            ).hex()
        elif not field.documented:
            undocumented[field.name] = draw(_raw_range(field))
        elif field.flags is not None:
            values[field.name] = draw(st.frozensets(st.sampled_from(sorted(field.flags.values()))))
        elif field.values is not None:
            values[field.name] = draw(st.sampled_from(sorted(field.values.values())))
        elif field.name == "running":
            values[field.name] = draw(st.booleans())
        else:
            raw = draw(_raw_range(field))
            if field.name == "version" or field.name in {"level", "seq"}:
                raw = abs(raw)
            values[field.name] = round(raw * field.scale, 9) if field.scale != 1 else raw
    if undocumented:
        values["undocumented"] = undocumented
    return REPORT_ADAPTER.validate_python(values)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_commands_round_trip(spec: DeviceSpec, data) -> None:
    codec = Codec(spec)
    command = data.draw(commands(spec))
    decoded = codec.decode_command(codec.encode_command(command))
    # Theragun's stop is set_speed at 0: both encode the same bytes and read back as stop
    assert decoded == command or (isinstance(command, SetSpeed) and command.ppm == 0)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_reports_round_trip(spec: DeviceSpec, data) -> None:
    codec = Codec(spec)
    report = data.draw(reports(spec))
    assert codec.decode_report(codec.encode_report(report)) == report


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
@settings(max_examples=400, deadline=None)
@given(data=st.binary(max_size=40))
def test_any_bytes_decode_or_raise_decode_error(spec: DeviceSpec, data: bytes) -> None:
    codec = Codec(spec)
    for decode in (codec.decode_report, codec.decode_command):
        with contextlib.suppress(DecodeError):
            decode(data)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_well_framed_garbage_decodes_or_raises_decode_error(spec: DeviceSpec, data) -> None:
    """Random payloads in frames with a valid header, length and checksum.

    Random bytes almost never pass the checksum; these do, so the field checks
    (unknown codes, out-of-range setpoints, wrong sizes) are what gets exercised.
    """
    codec = Codec(spec)
    header = hex_to_bytes(spec.frame.device_header)
    for section, decode in (
        (spec.reports, codec.decode_report),
        (spec.commands, codec.decode_command),
    ):
        message = section[data.draw(st.sampled_from(sorted(section)))]
        size = data.draw(st.sampled_from([message.payload_size, message.payload_size + 1, 0]))
        payload = data.draw(st.binary(min_size=size, max_size=size))
        if decode is codec.decode_command:
            header = hex_to_bytes(spec.frame.host_header)
        frame = codec._frame(header, message, payload)
        with contextlib.suppress(DecodeError):
            decode(frame)


@pytest.mark.parametrize("spec", ALL_SPECS, ids=lambda s: s.name)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_telemetry_holds_what_a_validated_report_holds(spec: DeviceSpec, data) -> None:
    """The Supervisor's status values, built without pydantic, are decode_report's, refusals too."""
    codec = Codec(spec)
    message = spec.reports[data.draw(st.sampled_from(sorted(spec.reports)))]
    payload = data.draw(st.binary(min_size=message.payload_size, max_size=message.payload_size))
    frame = codec._frame(hex_to_bytes(spec.frame.device_header), message, payload)
    outcomes = []
    for decode in (codec.decode_report, codec.decode_telemetry):
        try:
            outcomes.append(decode(frame))
        except DecodeError as exc:
            outcomes.append(exc.reason)
    report, telemetry = outcomes
    if isinstance(report, DecodeFailure):
        assert telemetry is report
        return
    if isinstance(report, Version):
        assert telemetry == report
        return
    assert isinstance(report, Status)
    assert isinstance(telemetry, dict)
    assert set(telemetry) - {"undocumented"} == spec.documented_fields
    for name, value in telemetry.items():
        held = getattr(report, name)
        assert value == held
        assert type(value) is type(held)
