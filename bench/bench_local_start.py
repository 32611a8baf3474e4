"""`deploy local` start-up: cold (an empty state directory: initdb, schema) and warm (the state
of a stopped local cloud kept: objects, messages and rows restored), wall time of the command
until it returns, which is when the local cloud reports ready.

    .venv/bin/python bench/bench_local_start.py [--runs 3] [--collections PATH]

`--collections` times another checkout's CLI (to compare before and after a change); the
state directories are temporary and removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from _common import REPO, median, write_result

NAME = "bench_local_start"
TARGET_COLD_S, TARGET_WARM_S = 10.0, 3.0


def _run(cli: str, env: dict[str, str], *args: str) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([cli, *args], env=env, capture_output=True, check=False, timeout=300)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{cli} {' '.join(args)} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-300:]}")
    return elapsed


def _stop(cli: str, env: dict[str, str], state: Path) -> None:
    """Stop without deleting: SIGTERM the supervisor and wait for it to go."""
    import json
    import signal

    pid = json.loads((state / "local" / "state.json").read_text())["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--collections", default=str(REPO / ".venv" / "bin" / "collections"))
    parser.add_argument("--label", default="this checkout")
    args = parser.parse_args()
    cold, warm = [], []
    for _ in range(args.runs):
        state = Path(tempfile.mkdtemp(prefix="bench-start-"))
        env = {**os.environ, "COLLECTIONS_STATE_DIR": str(state)}
        try:
            cold.append(_run(args.collections, env, "deploy", "local"))
            _stop(args.collections, env, state)
            warm.append(_run(args.collections, env, "deploy", "local"))
        finally:
            subprocess.run([args.collections, "destroy", "local", "--yes"], env=env,
                           capture_output=True, check=False, timeout=120)
            subprocess.run([args.collections, "destroy", "local"], env=env,
                           capture_output=True, check=False, timeout=120)
            shutil.rmtree(state, ignore_errors=True)
    result = {"label": args.label, "cli": args.collections,
              "cold_s": [round(v, 3) for v in cold], "warm_s": [round(v, 3) for v in warm],
              "cold_median_s": round(median(cold), 3), "warm_median_s": round(median(warm), 3),
              "targets": {"cold_s": TARGET_COLD_S, "warm_s": TARGET_WARM_S}}
    path = write_result(NAME if args.label == "this checkout" else f"{NAME}_{args.label}",
                        result)
    print(f"{args.label}: cold median {result['cold_median_s']} s {cold}, "
          f"warm median {result['warm_median_s']} s {warm} -> {path}")


if __name__ == "__main__":
    main()
