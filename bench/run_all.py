"""Run every benchmark, one after another, each in a fresh interpreter.

    .venv/bin/python bench/run_all.py        (or: make bench)

Each benchmark prints its summary and writes bench/results/<name>.json; this prints one line
per benchmark at the end and exits non-zero only if a benchmark crashed (a missed target is a
finding, not a failure).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
BENCHMARKS = ("bench_thumbnail", "bench_startup", "bench_e2e", "bench_follow", "bench_load",
              "bench_search", "bench_classifier", "bench_golden")


def main() -> int:
    env = {**os.environ, "COLLECTIONS_STATE_DIR": os.environ.get("COLLECTIONS_STATE_DIR",
                                                                 "/tmp/bench-state")}
    crashed = []
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        proc = subprocess.run([sys.executable, str(BENCH_DIR / f"{name}.py")], env=env,
                              check=False, timeout=1800)
        if proc.returncode != 0:
            crashed.append(name)
        print(flush=True)
    print("== summary")
    for name in BENCHMARKS:
        path = BENCH_DIR / "results" / f"{name}.json"
        if name in crashed or not path.exists():
            print(f"  {name:16s} CRASHED")
            continue
        result = json.loads(path.read_text())
        met = {True: "met", False: "MISSED", None: "n/a"}[result.get("met")]
        print(f"  {name:16s} target {result.get('target')}: {met}")
    return 1 if crashed else 0


if __name__ == "__main__":
    sys.exit(main())
