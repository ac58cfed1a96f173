"""Reading a large capture: speed beside a bare read of the same file, and memory.

A capture of N records is made from a recorded gunctl-open session (its ATT
traffic repeated with the time moved on, in ACL packets as a phone writes
them), then read four ways in one run:

- bare read: the file in 1 MiB chunks, nothing decoded (the floor);
- records: ``read_packets``, the btsnoop layer alone;
- ATT: ``Capture.records()``, with L2CAP reassembly and GATT tracking;
- summary: what ``gunctl capture show --summary`` does.

Memory is each way's peak resident size in a fresh process, for the whole
file and for a tenth of it: reading streams, so the two should be about equal.

    python -m bench.capture [--records 1000000]
"""

from __future__ import annotations

import argparse
import itertools
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from bench.report import report
from gunctl.capture import Capture
from gunctl.capture.btsnoop import read_packets
from gunctl.capture.summary import Summary
from gunctl.specs.loader import get_spec
from gunsim.record import Frame, record_session, write_capture

CHUNK = 1 << 20


def make_capture(path: Path, records: int) -> int:
    """A btsnoop file of about ``records`` records; returns how many it holds."""
    session = record_session(get_spec("gunctl-open"))
    period = session[-1].at + 0.1
    repeated = (Frame(f.at + n * period, f.sent, f.pdu) for n in itertools.count() for f in session)
    return write_capture(path, itertools.islice(repeated, records - 2))


def bare(path: Path) -> int:
    size = 0
    with path.open("rb") as stream:
        while chunk := stream.read(CHUNK):
            size += len(chunk)
    return size


def packets(path: Path) -> int:
    with path.open("rb", buffering=CHUNK) as stream:
        return sum(1 for _ in read_packets(stream))


def att(path: Path) -> int:
    return sum(1 for _ in Capture(path).records())


def summary(path: Path) -> int:
    return Summary().add_all(Capture(path).records()).count


WAYS: dict[str, Callable[[Path], int]] = {
    "bare read": bare,
    "records": packets,
    "ATT": att,
    "summary": summary,
}


def peak_rss_mb(way: str, path: Path) -> float:
    """Peak resident memory of a fresh process that reads ``path`` one way."""
    code = (
        "import resource, sys; from pathlib import Path; from bench.capture import WAYS; "
        f"WAYS[{way!r}](Path({str(path)!r})); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return round(int(out.strip()) / 1024, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        big, small = Path(folder) / "big.log", Path(folder) / "small.log"
        written = make_capture(big, args.records)
        make_capture(small, args.records // 10)
        rows = []
        for name, way in WAYS.items():
            start = time.perf_counter()
            count = way(big)
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "way": name,
                    "seconds": round(seconds, 2),
                    "per record us": round(seconds / written * 1e6, 2),
                    "items": count,
                    "peak MB (whole)": peak_rss_mb(name, big),
                    "peak MB (tenth)": peak_rss_mb(name, small),
                }
            )
        size_mb = round(big.stat().st_size / 1e6, 1)
        self_mb = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    report(
        "capture",
        f"Reading a capture of {written} records ({size_mb} MB)",
        rows,
        {"records": written, "file_mb": size_mb, "bench_process_peak_mb": self_mb},
    )


if __name__ == "__main__":
    main()
