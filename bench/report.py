"""How every benchmark reports: a table on stdout and a JSON file in bench/results/."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).parent / "results"


def percentiles(samples: Sequence[float], scale: float = 1000.0) -> dict[str, float]:
    """p50, p99 and max of ``samples`` (seconds), in milliseconds by default."""
    if not samples:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {
        "n": len(ordered),
        "p50": round(statistics.median(ordered) * scale, 3),
        "p99": round(p99 * scale, 3),
        "max": round(ordered[-1] * scale, 3),
    }


def report(
    name: str, title: str, rows: list[dict[str, Any]], meta: dict[str, Any] | None = None
) -> Path:
    from rich.console import Console
    from rich.table import Table

    table = Table(*rows[0].keys(), title=title) if rows else Table(title=title)
    for row in rows:
        table.add_row(*(f"{v:g}" if isinstance(v, float) else str(v) for v in row.values()))
    Console().print(table)
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.json"
    document = {
        "benchmark": name,
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],  # the machine's own noise, as uptime
        "meta": meta or {},
        "rows": rows,
    }
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; wrote {path}")
    return path
