"""Helpers shared by the benchmarks: statistics, machine facts, writing results."""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def median(values: list[float]) -> float:
    return statistics.median(values)


def machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "loadavg_at_end": _loadavg(),
    }


def _loadavg() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def write_result(name: str, result: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    result = {"benchmark": name, "machine": machine(), **result}
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def start_local_cloud(state_dir: Path) -> tuple[Any, float]:
    """Start the local cloud (or use the one running there); return its state and start time."""
    from collections_ops.localcloud.supervisor import manager

    t0 = time.perf_counter()
    state, started = manager.start(state_dir)
    if not started:
        print(f"note: a local cloud was already running in {state_dir}; using it")
    return state, time.perf_counter() - t0


def destroy_local_cloud(state_root: Path) -> None:
    """`collections destroy local`, falling back to the library call the command wraps."""
    collections = Path(sys.executable).parent / "collections"
    proc = subprocess.run([str(collections), "destroy", "local"], capture_output=True, text=True,
                          env={**os.environ, "COLLECTIONS_STATE_DIR": str(state_root)},
                          check=False, timeout=120)
    if proc.returncode != 0:
        from collections_ops.localcloud.supervisor import manager

        manager.stop(state_root / "local", remove=True)
