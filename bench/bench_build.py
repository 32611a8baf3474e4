"""`collections build dev` twice: the first build against the second, which the stamp lets skip
pip and which reuses the bytecode of every unchanged source.

    .venv/bin/python bench/bench_build.py [--out DIR]

The wheels come from the test wheelhouse (`make wheelhouse`), so nothing is downloaded. Both
builds run in this one process, one after the other, on the same machine: the figure that
matters is the second build's time, and its ratio to the first's.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _common import REPO, write_result

sys.path.insert(0, str(REPO))

NAME = "bench_build"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path,
                        help="bundle directory (default: a fresh temporary one)")
    args = parser.parse_args()
    from tests import wheelhouse

    from collections_ops.services import build

    if not wheelhouse.current():
        sys.exit(wheelhouse.missing_message())
    out = args.out or Path(tempfile.mkdtemp(prefix="bench-build-"))
    try:
        seconds = []
        for _ in range(2):
            started = time.perf_counter()
            reports = build.build("dev", out_dir=out, pip_args=wheelhouse.pip_args())
            seconds.append(time.perf_counter() - started)
        # What the second build reported.
        result = {"first_build_s": round(seconds[0], 1), "second_build_s": round(seconds[1], 1),
                  "ratio": round(seconds[1] / seconds[0], 3),
                  "second_build_cached": all(r.cached for r in reports),
                  "compiled_files": sum(r.compiled_files for r in reports)}
    finally:
        if args.out is None:
            shutil.rmtree(out, ignore_errors=True)
    for key, value in result.items():
        print(f"  {key:22s} {value}")
    write_result(NAME, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
