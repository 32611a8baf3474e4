"""Follow latency: time from a log line being written to CloudWatch Logs to `collections logs
--follow` printing it, over the local cloud.

A `collections logs all --follow` subprocess runs; this script writes one uniquely numbered line
at a time with `put_log_events` into a function's log group (round-robin over the three) and
waits for the subprocess to print it. Lines are spaced out at random 0.2-1.2 s intervals so the
follower's idle backoff is exercised as in real use.

    .venv/bin/python bench/bench_follow.py [--lines 30]
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import threading
import time
from pathlib import Path
from queue import Empty, Queue
from typing import Any

from _common import REPO, median, percentile, write_result

NAME = "bench_follow"
TARGET_P50_S = 2.0
GROUPS = [f"/aws/lambda/collections-local-{n}" for n in
          ("ImageProcessorLambda", "AnalyzerLambda", "EmbedderLambda")]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=30)
    args = parser.parse_args()

    state = Path(os.environ.get("COLLECTIONS_STATE_DIR", "/tmp/bench-follow-state"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"COLLECTIONS_STATE_DIR": str(state), "NO_COLOR": "1", "COLUMNS": "300"})
    cli = [sys.executable, "-m", "collections_ops"]
    subprocess.run([*cli, "deploy", "local"], env=env, check=True, capture_output=True)
    sys.path.insert(0, str(REPO / "src"))
    from collections_ops.localcloud.aws.access import client_factory
    from collections_ops.localcloud.state import read_state

    local = read_state(state / "local")
    assert local is not None
    logs = client_factory(local)("logs")  # as the local cloud's administrator
    for group in GROUPS:
        logs.create_log_stream(logGroupName=group, logStreamName="bench-follow")

    follower = subprocess.Popen([*cli, "logs", "all", "--follow", "--since", "1s"], env=env,
                                stdout=subprocess.PIPE, text=True)
    printed: Queue[tuple[str, float]] = Queue()

    def pump() -> None:
        assert follower.stdout is not None
        for line in follower.stdout:
            printed.put((line, time.monotonic()))

    threading.Thread(target=pump, daemon=True).start()
    time.sleep(2.0)  # let the follower start polling
    latencies: list[float] = []
    rng = random.Random(3)
    try:
        for n in range(args.lines):
            marker = f"bench-follow-line-{n:04d}"
            group = GROUPS[n % len(GROUPS)]
            written = time.monotonic()
            logs.put_log_events(logGroupName=group, logStreamName="bench-follow", logEvents=[
                {"timestamp": int(time.time() * 1000), "message": marker}])
            deadline = written + 10
            while True:
                try:
                    line, at = printed.get(timeout=max(0.01, deadline - time.monotonic()))
                except Empty:
                    raise SystemExit(f"line {n} was not printed within 10 s") from None
                if marker in line:
                    latencies.append(at - written)
                    break
            time.sleep(rng.uniform(0.2, 1.2))
    finally:
        follower.terminate()
        follower.wait(10)
        subprocess.run([*cli, "destroy", "local"], env=env, check=False, capture_output=True)

    result: dict[str, Any] = {
        "lines": len(latencies),
        "p50_s": round(median(latencies), 3),
        "p95_s": round(percentile(latencies, 95), 3),
        "max_s": round(max(latencies), 3),
        "target": f"new line printed within {TARGET_P50_S} s",
        "met": max(latencies) <= TARGET_P50_S,
    }
    path = write_result(NAME, result)
    print(f"follow latency over {len(latencies)} lines: p50 {result['p50_s']} s, "
          f"p95 {result['p95_s']} s, max {result['max_s']} s "
          f"(target: every line within {TARGET_P50_S} s): {'met' if result['met'] else 'MISSED'}")
    print(f"  -> {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
