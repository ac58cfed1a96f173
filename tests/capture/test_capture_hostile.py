"""Hostile captures: whatever the bytes, reading ends in records or one CaptureError."""

from __future__ import annotations

import io
import struct
from pathlib import Path

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gunctl.capture.att import AttOp, AttReader, AttRecord, GattTable
from gunctl.capture.btsnoop import CaptureError, read_packets
from gunctl.capture.draft import Mark, check_file, draft_spec
from gunctl.capture.frames import CaptureFrames, Channel
from gunctl.capture.specfile import render
from gunctl.specs.models import Direction

HEADER = b"btsnoop\0" + struct.pack(">II", 1, 1002)


def read_all(data: bytes) -> int | None:
    """Where reading stopped with a CaptureError (None: at the end); anything else fails."""
    stopped = None
    try:
        for _ in AttReader().records(read_packets(io.BytesIO(data))):
            pass
    except CaptureError as exc:
        stopped = exc.offset
    assert stopped is None or 0 <= stopped <= len(data)
    return stopped


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_after_a_good_header(tail: bytes) -> None:
    read_all(HEADER + tail)


def _record(packet: bytes, flags: int) -> bytes:
    return struct.pack(">IIIIq", len(packet), len(packet), flags, 0, 0) + packet


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(st.binary(min_size=0, max_size=60), st.integers(0, 3)),
        max_size=40,
    )
)
def test_well_framed_records_of_junk_acl(packets: list[tuple[bytes, int]]) -> None:
    """Records that are valid btsnoop but carry nonsense ACL, L2CAP and ATT."""
    body = b"".join(_record(b"\x02" + data, flags) for data, flags in packets)
    read_all(HEADER + body)


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_a_real_capture_with_bytes_flipped(captures: dict[str, Path], data: st.DataObject) -> None:
    whole = bytearray(captures["modbus-twin"].read_bytes()[:4000])
    for _ in range(data.draw(st.integers(1, 8))):
        at = data.draw(st.integers(16, len(whole) - 1))
        whole[at] = data.draw(st.integers(0, 255))
    read_all(bytes(whole))


def _channel(frames: list[bytes], sent: bool) -> Channel:
    channel = Channel(0x12 if sent else 0x14, None, 64)
    op = AttOp.WRITE if sent else AttOp.NOTIFY
    direction = Direction.HOST if sent else Direction.DEVICE
    for i, value in enumerate(frames):
        channel.add(AttRecord(i * 0.1, 64, direction, op, channel.handle, None, value, 0))
    return channel


frames = st.lists(st.binary(min_size=1, max_size=12), min_size=1, max_size=30)


@settings(max_examples=60, deadline=None)
@example(
    b"\xaa\x01", [b"\xd0}\xe9", b"\0\0\0"], [b"\0", b"\1"], [(0.0, "speed:3"), (0.0, "level:1")]
)
@given(
    st.sampled_from([b"", b"\xaa", b"\xaa\x01"]),
    frames,
    frames,
    st.lists(st.tuples(st.floats(0, 5), st.sampled_from(["stop", "speed:3", "level:1"]))),
)
def test_a_draft_of_any_frames_is_valid_or_absent(
    header: bytes, host: list[bytes], device: list[bytes], marks: list[tuple[float, str]]
) -> None:
    """Whatever frames a capture holds, a draft either is a valid spec or says why there is none."""
    gathered = CaptureFrames(
        _channel([header + f for f in host], True),
        _channel([header.replace(b"\xaa", b"\xbb") + f for f in device], False),
        GattTable(),
    )
    parsed = [Mark.parse(f"{t}={what}") for t, what in marks]
    draft = draft_spec(gathered, "fuzzed", "fuzz", parsed)
    if draft.spec is None:
        assert draft.warnings
    else:
        assert check_file("fuzzed", render(draft)) == []
