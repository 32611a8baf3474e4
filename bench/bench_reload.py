"""Hot reload: save a handler -> the new code runs, under `collections deploy local --watch`.

    .venv/bin/python bench/bench_reload.py [--runs 7]

A local cloud of its own over a temporary copy of `lambdas/`. While the watcher runs, a feeder
puts an S3 test event (`s3:TestEvent`, which the processor answers at once) on the processor's
trigger queue every 50 ms, so there is always a next invocation. Each run saves the processor's
handler with a new marker log line and measures from the save (the file's write) to the
timestamp of the first log event of the new code in CloudWatch Logs -- what a developer waits
for. The watcher's own figure (change seen -> version published) is reported beside it.
Median of the runs; target <= 1 s. The feeder's 50 ms spacing bounds the resolution.
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
        from collections_ops.localcloud import iam

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
        samples, published = [], []
        for run in range(args.runs):
            time.sleep(1.0)  # let the previous reload settle
            word = f"run{run}-{time.time_ns()}"
            _mark(handler, word)
            saved = handler.stat().st_mtime
            deadline = time.monotonic() + 30
            seen = None
            while seen is None and time.monotonic() < deadline:
                found = logs.filter_log_events(logGroupName=group,
                                               filterPattern=f'"bench marker {word}"')["events"]
                if found:
                    seen = min(e["timestamp"] for e in found) / 1000
                time.sleep(0.05)
            if seen is None:
                raise SystemExit(f"run {run}: the new code never ran")
            samples.append(seen - saved)
            while True:
                line = lines.get(timeout=30)
                if line.startswith("reloaded processor"):
                    published.append(float(line.rsplit(" in ", 1)[1].split()[0]))
                    break
            print(f"run {run}: save -> new code running {samples[-1]:.3f} s ({line})")
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
              "feed_interval_s": FEED_S}
    write_result(NAME, result)
    verdict = "met" if result["median_s"] <= TARGET_S else "MISSED"
    print(f"save -> new code running: median {result['median_s']:.3f} s, "
          f"p90 {result['p90_s']:.3f} s over {args.runs} runs (target <= {TARGET_S} s: {verdict})")


if __name__ == "__main__":
    main()
