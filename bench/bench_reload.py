"""Hot reload: save a handler -> the new code runs, under `collections deploy local --watch`.

    .venv/bin/python bench/bench_reload.py [--runs 7]

A local cloud of its own over a temporary copy of `lambdas/`. While the watcher runs, a feeder
puts an S3 test event (`s3:TestEvent`, which the processor answers at once) on the processor's
trigger queue every 50 ms, so there is always a next invocation. Each run saves the processor's
handler with a new marker log line and measures from the save (the file's write) to the
timestamp of the first log event of the new code in CloudWatch Logs -- what a developer waits
for. The watcher's own figure (change seen -> version published) is reported beside it.
Median of the runs; target <= 1 s. The feeder's 50 ms spacing bounds the resolution.

Then `rollback local --function processor --to N`, alternately back to the version before the
last save and forward to the last one (as many times as --runs): from the command's start to
the first log event of that version's marker after it -- what an operator waits for (the CLI
process's own start is included; its duration is reported beside it).
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import REPO, median, percentile, write_result

NAME = "bench_reload"
TARGET_S = 1.0
FEED_S = 0.05
HEAD = "def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:\n"
TEST_EVENT = json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent",
                         "Bucket": "bench", "RequestId": "bench"})


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "collections_ops", *args], env=env,
                          capture_output=True, text=True, timeout=300, check=False)


def _mark(handler: Path, word: str) -> None:
    source = handler.read_text()
    top, body = source.split(HEAD, 1)
    if body.lstrip().startswith('logger.warning("bench marker'):
        body = body.split("\n", 1)[1]
    handler.write_text(f'{top}{HEAD}    logger.warning("bench marker {word}")\n{body}')


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()


    root = Path(tempfile.mkdtemp(prefix="bench-reload-"))
    lambdas = root / "lambdas"
    shutil.copytree(REPO / "lambdas", lambdas,
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update({"COLLECTIONS_STATE_DIR": str(root / "state"), "COLLECTIONS_ENV": "local",
                "COLLECTIONS_LAMBDAS_DIR": str(lambdas), "NO_COLOR": "1", "COLUMNS": "200"})
    stop = threading.Event()
    watcher = None
    try:
        started = _cli(env, "deploy", "local")
        if started.returncode:
            raise SystemExit(f"deploy local failed: {started.stderr[-400:]}")
        state = json.loads((root / "state" / "local" / "state.json").read_text())
        from collections_ops.localcloud.aws import iam

        session = iam.admin_session(state["state_dir"], state["region"])
        sqs = session.client("sqs", endpoint_url=state["endpoint_url"])
        logs = session.client("logs", endpoint_url=state["endpoint_url"])
        group = f"/aws/lambda/{state['functions']['processor']}"

        watcher = subprocess.Popen([sys.executable, "-m", "collections_ops", "deploy", "local",
                                    "--watch"], env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True)
        lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [lines.put(ln.strip()) for ln in watcher.stdout or []],
                         daemon=True).start()

        def feed() -> None:
            while not stop.wait(FEED_S):
                sqs.send_message(QueueUrl=state["queue_urls"]["processor"],
                                 MessageBody=TEST_EVENT)

        threading.Thread(target=feed, daemon=True).start()
        while "watching" not in lines.get(timeout=60):
            pass
        handler = lambdas / "image_processor" / "handler.py"
        samples, published, marked = [], [], []  # marked: (word, version) of each save
        for run in range(args.runs):
            time.sleep(1.0)  # let the previous reload settle
            word = f"run{run}-{time.time_ns()}"
            _mark(handler, word)
            saved = handler.stat().st_mtime
            seen = _first_logged(logs, group, word)
            if seen is None:
                raise SystemExit(f"run {run}: the new code never ran")
            samples.append(seen - saved)
            while True:
                line = lines.get(timeout=30)
                if line.startswith("reloaded processor"):
                    published.append(float(line.rsplit(" in ", 1)[1].split()[0]))
                    break
            marked.append((word, line.split("→ version ", 1)[1].split()[0]))
            print(f"run {run}: save -> new code running {samples[-1]:.3f} s ({line})")
        rollbacks, commands = _rollbacks(env, logs, group, marked[-2:], args.runs)
    finally:
        stop.set()
        if watcher is not None:
            watcher.terminate()
            watcher.wait(10)
        _cli(env, "destroy", "local", "--yes")
        shutil.rmtree(root, ignore_errors=True)

    result = {"runs": args.runs, "save_to_running_s": samples,
              "median_s": round(median(samples), 3), "p90_s": round(percentile(samples, 90), 3),
              "watcher_publish_s": published, "target_s": TARGET_S,
              "feed_interval_s": FEED_S, "rollback_to_running_s": rollbacks,
              "rollback_median_s": round(median(rollbacks), 3),
              "rollback_command_s": commands}
    write_result(NAME, result)
    verdict = "met" if result["median_s"] <= TARGET_S else "MISSED"
    print(f"save -> new code running: median {result['median_s']:.3f} s, "
          f"p90 {result['p90_s']:.3f} s over {args.runs} runs (target <= {TARGET_S} s: {verdict})")

    print(f"rollback -> that version running: median {result['rollback_median_s']:.3f} s "
          f"over {len(rollbacks)} rollbacks (command alone: median {median(commands):.3f} s)")


def _first_logged(logs: Any, group: str, word: str, *, since: float = 0.0,
                  timeout: float = 30) -> float | None:
    """When the marker `word` was first logged (after `since`), waiting up to `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = logs.filter_log_events(logGroupName=group, startTime=int(since * 1000),
                                       filterPattern=f'"bench marker {word}"')["events"]
        if found:
            return float(min(e["timestamp"] for e in found)) / 1000
        time.sleep(0.05)
    return None


def _rollbacks(env: dict[str, str], logs: Any, group: str, last_two: list[tuple[str, str]],
               runs: int) -> tuple[list[float], list[float]]:
    """Move `live` back and forth between the last two versions; seconds until each runs."""
    samples, commands = [], []
    for n in range(runs):
        word, version = last_two[0] if n % 2 == 0 else last_two[1]
        time.sleep(1.0)
        began = time.time()
        moved = _cli(env, "rollback", "local", "--function", "processor", "--to", version)
        commands.append(time.time() - began)
        if moved.returncode:
            raise SystemExit(f"rollback failed: {moved.stderr[-400:]}")
        seen = _first_logged(logs, group, word, since=began)
        if seen is None:
            raise SystemExit(f"rollback {n}: version {version} never ran")
        samples.append(seen - began)
        print(f"rollback {n}: -> version {version} running {samples[-1]:.3f} s "
              f"(command {commands[-1]:.3f} s)")
    return samples, commands


if __name__ == "__main__":
    main()
