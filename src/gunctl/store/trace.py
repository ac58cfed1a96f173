"""A session's telemetry trace, packed small enough to keep with every session.

Speed, force and temperature are sampled a few times a second (``TRACE_HZ``
of session time) and written in chunks of ``CHUNK_SAMPLES``, each one row:
the chunk's start time and, per sample, four little-endian 16-bit integers
(milliseconds after the chunk's start, speed in ppm, force in tenths of a
newton, temperature in tenths of a degree; ``MISSING`` where the device does
not report the value). Eight bytes a sample: a ten-minute session at 4 Hz is
about 20 kB. A chunk is written as it fills, so a crash loses at most one.
The step boundaries and every safety event are kept beside the samples as
marks (``History.trace``).
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from gunctl.datafile import DataModel

if TYPE_CHECKING:
    from gunctl.control.supervisor import Supervisor

TRACE_HZ = 4.0
CHUNK_SAMPLES = 20  # five seconds of session time at 4 Hz
MISSING = -32768
_ROW = struct.Struct("<Hhhh")
_SCALES = (1.0, 10.0, 10.0)  # speed ppm, force tenths of N, temperature tenths of degC


class Sample(DataModel):
    """One reading of the telemetry, at session clock seconds ``at``."""

    at: float
    speed_ppm: float | None = None
    force_n: float | None = None
    temperature_c: float | None = None


class Mark(DataModel):
    """Something that happened at ``at``: a step began, a rule warned, stopped, pain, the end."""

    at: float
    kind: str  # "step", "warning", "safety_stop", "pain", "end"
    label: str
    values: dict[str, Any] = {}


class Trace(DataModel):
    samples: list[Sample]
    marks: list[Mark]


def sampler(supervisor: Supervisor) -> Callable[[], Sample]:
    """Read a Supervisor's latest telemetry as a trace sample, on its session clock."""

    def sample() -> Sample:
        telemetry = supervisor.telemetry
        return Sample(
            at=supervisor.clock.now(),
            speed_ppm=telemetry.get("speed_ppm"),
            force_n=telemetry.get("force_n"),
            temperature_c=telemetry.get("temperature_c"),
        )

    return sample


def _quantise(value: float | None, scale: float) -> int:
    if value is None or not math.isfinite(value):
        return MISSING
    return max(MISSING + 1, min(32767, round(value * scale)))


def encode(samples: list[Sample]) -> tuple[float, bytes]:
    """(the chunk's start time, its packed samples); times more than 65 s on are clamped."""
    t0 = samples[0].at
    data = b"".join(
        _ROW.pack(
            max(0, min(65535, round((s.at - t0) * 1000))),
            *(
                _quantise(v, k)
                for v, k in zip((s.speed_ppm, s.force_n, s.temperature_c), _SCALES, strict=True)
            ),
        )
        for s in samples
    )
    return t0, data


def decode(chunks: Iterable[tuple[float, bytes]]) -> list[Sample]:
    """Every sample of the chunks, in the order given."""
    samples = []
    for t0, data in chunks:
        for dt, *raw in _ROW.iter_unpack(data):
            speed, force, temperature = (
                None if v == MISSING else v / k for v, k in zip(raw, _SCALES, strict=True)
            )
            samples.append(
                Sample(
                    at=round(t0 + dt / 1000, 3),
                    speed_ppm=speed,
                    force_n=force,
                    temperature_c=temperature,
                )
            )
    return samples
