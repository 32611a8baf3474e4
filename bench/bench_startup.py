"""CLI start-up: `collections --help` against `aws --version`, wall time via subprocess.

Runs alternate between the two commands so load on the machine affects both alike. One untimed
run of each first warms the page cache and the bytecode caches.

    .venv/bin/python bench/bench_startup.py [--runs 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _common import REPO, median, write_result

NAME = "bench_startup"
TARGET_RATIO = 0.5


def _time(argv: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env,
                          check=False, timeout=60)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {proc.returncode}: "
                           f"{proc.stderr.decode(errors='replace')[-300:]}")
    return elapsed


def _resolve_shim(aws: str) -> str | None:
    """If `aws` on PATH is a pyenv shim (a bash script that runs `pyenv exec`), the real
    executable behind it; the shim's own overhead is not the aws CLI's start-up."""
    if "/shims/" not in aws or not shutil.which("pyenv"):
        return None
    proc = subprocess.run(["pyenv", "which", "aws"], capture_output=True, text=True, check=False)
    real = proc.stdout.strip()
    return real if proc.returncode == 0 and real and Path(real).exists() else None


def run(runs: int) -> dict[str, Any]:
    collections = str(Path(sys.executable).parent / "collections")
    if not Path(collections).exists():
        collections = str(REPO / ".venv" / "bin" / "collections")
    aws = shutil.which("aws")
    env = {**os.environ, "COLLECTIONS_STATE_DIR": os.environ.get("COLLECTIONS_STATE_DIR",
                                                                 "/tmp/bench-state")}
    commands = {"collections --help": [collections, "--help"]}
    aws_version = None
    aws_real = _resolve_shim(aws) if aws else None
    if aws:
        commands["aws --version"] = [aws_real or aws, "--version"]
        if aws_real:
            commands["aws --version (via pyenv shim)"] = [aws, "--version"]
        aws_version = subprocess.run([aws, "--version"], capture_output=True, text=True,
                                     check=False).stdout.strip() or None
    for argv in commands.values():
        _time(argv, env)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in commands}
    for n in range(runs):
        order = list(commands) if n % 2 == 0 else list(reversed(commands))
        for name in order:
            times[name].append(_time(commands[name], env))
    med = {name: median(ts) for name, ts in times.items()}
    result: dict[str, Any] = {
        "runs": runs,
        "commands": {name: argv for name, argv in commands.items()},
        "aws_found": bool(aws),
        "aws_on_path": aws,
        "aws_shim_resolved_to": aws_real,
        "aws_version": aws_version,
        "times_s": {name: [round(t, 4) for t in ts] for name, ts in times.items()},
        "median_s": {name: round(v, 4) for name, v in med.items()},
        "min_s": {name: round(min(ts), 4) for name, ts in times.items()},
        "target": f"<= {TARGET_RATIO:g}x of aws --version",
    }
    if aws:
        ratio = med["collections --help"] / med["aws --version"]
        result["ratio"] = round(ratio, 3)
        result["met"] = ratio <= TARGET_RATIO
        if aws_real:
            result["ratio_vs_shim"] = round(
                med["collections --help"] / med["aws --version (via pyenv shim)"], 3)
    else:
        result["ratio"] = None
        result["met"] = None
        result["note"] = "aws CLI not found on PATH: ratio skipped"
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    result = run(max(10, args.runs))
    path = write_result(NAME, result)
    print(f"CLI start-up, {result['runs']} interleaved runs each")
    for name, value in result["median_s"].items():
        fastest = result["min_s"][name] * 1000
        print(f"  {name:31s} median {value * 1000:7.1f} ms  (min {fastest:.1f})")
    if result["ratio"] is None:
        print(f"  {result['note']}")
    else:
        print(f"  ratio {result['ratio']:.2f}x (target {result['target']}): "
              f"{'met' if result['met'] else 'MISSED'}"
              + (f"; {result['ratio_vs_shim']:.2f}x against the pyenv shim"
                 if "ratio_vs_shim" in result else ""))
    print(f"  -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
