"""Local end-to-end latency: from an upload to its embedding row in PostgreSQL.

Starts the embedded local cloud once (state in $COLLECTIONS_STATE_DIR/local, default
/tmp/bench-state/local), uploads samples/test-image.jpg under distinct keys one at a time and,
for each, polls PostgreSQL every 20 ms until the `items`, `analyses` and `embeddings` rows are
visible. Times are measured from the moment `put_object` returns. The first uploads (default 4)
warm each function's two dispatcher workers ("containers", cold starts) and are reported
apart. The local cloud is destroyed at the end.

    COLLECTIONS_STATE_DIR=/tmp/bench-state .venv/bin/python bench/bench_e2e.py [--images 25]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from _common import REPO, destroy_local_cloud, median, percentile, start_local_cloud, write_result

os.environ.setdefault("COLLECTIONS_STATE_DIR", "/tmp/bench-state")
STATE_ROOT = Path(os.environ["COLLECTIONS_STATE_DIR"])
STATE_DIR = STATE_ROOT / "local"

NAME = "bench_e2e"
SAMPLE = REPO / "samples" / "test-image.jpg"
USER = "user-bench"
POLL_INTERVAL_S = 0.020
PER_IMAGE_TIMEOUT_S = 60.0
TARGET_P50_S = 1.5
STAGES = ("items", "analyses", "embeddings")
_DURATION = re.compile(r"REPORT RequestId: \S+\tDuration: ([0-9.]+) ms")

POLL_SQL = """
SELECT
  EXISTS (SELECT 1 FROM items WHERE user_id = %(u)s AND id = %(i)s),
  EXISTS (SELECT 1 FROM analyses WHERE user_id = %(u)s AND item_id = %(i)s),
  EXISTS (SELECT 1 FROM embeddings WHERE user_id = %(u)s AND item_id = %(i)s)
"""


def _start() -> tuple[Any, float]:
    return start_local_cloud(STATE_DIR)


def _destroy() -> None:
    destroy_local_cloud(STATE_ROOT)


def _measure_one(s3: Any, conn: Any, bucket: str, data: bytes, n: int) -> dict[str, Any]:
    item_id = f"img-{n:03d}"
    key = f"{USER}/{item_id}.jpg"
    s3.put_object(Bucket=bucket, Key=key, Body=data, ContentType="image/jpeg",
                  Metadata={"correlation-id": uuid.uuid4().hex})
    t0 = time.perf_counter()
    seen: dict[str, float] = {}
    polls = 0
    deadline = t0 + PER_IMAGE_TIMEOUT_S
    while time.perf_counter() < deadline and len(seen) < len(STAGES):
        row = conn.execute(POLL_SQL, {"u": USER, "i": item_id}).fetchone()
        polls += 1
        now = time.perf_counter() - t0
        for stage, present in zip(STAGES, row, strict=True):
            if present and stage not in seen:
                seen[stage] = now
        if len(seen) < len(STAGES):
            time.sleep(POLL_INTERVAL_S)
    return {"key": key, "polls": polls, "complete": len(seen) == len(STAGES),
            **{f"{stage}_s": round(seen[stage], 4) if stage in seen else None
               for stage in STAGES}}


def _handler_durations(state: Any) -> dict[str, dict[str, float]]:
    """Each function's handler durations (REPORT lines in its CloudWatch log group)."""
    from collections_ops.localcloud.aws.access import client_factory
    from collections_ops.pipeline import FUNCTIONS, environment

    env = environment("local")
    logs = client_factory(state)("logs")
    out: dict[str, dict[str, float]] = {}
    for fn in FUNCTIONS:
        durations: list[float] = []
        kwargs: dict[str, Any] = {"logGroupName": fn.log_group(env.name),
                                  "filterPattern": "REPORT"}
        for _ in range(50):  # bounded paging
            page = logs.filter_log_events(**kwargs)
            durations += [float(m.group(1)) for e in page.get("events", [])
                          if (m := _DURATION.search(e["message"]))]
            if not page.get("nextToken"):
                break
            kwargs["nextToken"] = page["nextToken"]
        if durations:
            out[fn.key] = {"count": len(durations), "median_ms": round(median(durations), 1),
                           "max_ms": round(max(durations), 1)}
    return out


def _stats(values: list[float]) -> dict[str, float]:
    return {"p50": round(percentile(values, 50), 4), "p95": round(percentile(values, 95), 4),
            "max": round(max(values), 4), "min": round(min(values), 4)}


def run(images: int, warmup: int) -> dict[str, Any]:
    import psycopg

    from collections_ops.localcloud.aws.access import client_factory

    data = SAMPLE.read_bytes()
    state, start_s = _start()
    try:
        s3 = client_factory(state)("s3")
        with psycopg.connect(state.database_url, autocommit=True) as conn:
            conn.execute("DELETE FROM items WHERE user_id = %s", (USER,))
            runs = [_measure_one(s3, conn, state.images_bucket, data, n)
                    for n in range(warmup + images)]
        handlers = _handler_durations(state)
    finally:
        _destroy()

    warm, measured = runs[:warmup], runs[warmup:]
    incomplete = [r["key"] for r in measured if not r["complete"]]
    done = [r for r in measured if r["complete"]]
    per_stage = {stage: _stats([r[f"{stage}_s"] for r in done]) for stage in STAGES} if done \
        else {}
    e2e = per_stage.get("embeddings", {})
    # Time spent between consecutive rows: processor, then analyzer, then embedder (each
    # including its queue hop and, for the last two, an EventBridge hop).
    gaps = {
        "upload_to_items": _stats([r["items_s"] for r in done]),
        "items_to_analyses": _stats([r["analyses_s"] - r["items_s"] for r in done]),
        "analyses_to_embeddings": _stats([r["embeddings_s"] - r["analyses_s"] for r in done]),
    } if done else {}
    return {
        "images": images, "warmup_images": warmup, "sample": str(SAMPLE.relative_to(REPO)),
        "sample_bytes": len(data), "poll_interval_s": POLL_INTERVAL_S,
        "local_cloud_start_s": round(start_s, 2), "state_dir": str(STATE_DIR),
        "e2e_s": e2e, "stage_visible_s": per_stage, "stage_gaps_s": gaps,
        "handler_durations": handlers,
        "warmup_runs": warm, "runs": measured, "incomplete": incomplete,
        "target": f"p50 <= {TARGET_P50_S:g} s",
        "met": bool(e2e) and not incomplete and e2e["p50"] <= TARGET_P50_S,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=25)
    parser.add_argument("--warmup", type=int, default=4)
    args = parser.parse_args()
    result = run(max(20, args.images), max(0, args.warmup))
    path = write_result(NAME, result)
    print(f"end to end, {result['images']} uploads one at a time (+{result['warmup_images']} "
          f"warm-up), polling PostgreSQL every {POLL_INTERVAL_S * 1000:.0f} ms; local cloud "
          f"started in {result['local_cloud_start_s']:.1f} s")
    for stage, s in result["stage_visible_s"].items():
        print(f"  {stage:10s} row visible: p50 {s['p50']:.3f} s  p95 {s['p95']:.3f} s  "
              f"max {s['max']:.3f} s")
    for gap, s in result["stage_gaps_s"].items():
        print(f"  {gap:23s} p50 {s['p50']:.3f} s  p95 {s['p95']:.3f} s")
    for fn, d in result["handler_durations"].items():
        print(f"  handler {fn:9s} median {d['median_ms']:.0f} ms  max {d['max_ms']:.0f} ms "
              f"({d['count']} invocations)")
    if result["warmup_runs"]:
        cold = ", ".join(f"{r['embeddings_s']:.2f}" if r["embeddings_s"] else "-"
                         for r in result["warmup_runs"])
        print(f"  warm-up uploads (cold workers), upload -> embedding s: {cold}")
    if result["incomplete"]:
        print(f"  INCOMPLETE after {PER_IMAGE_TIMEOUT_S:.0f} s: {', '.join(result['incomplete'])}")
    e2e = result["e2e_s"]
    if e2e:
        print(f"  upload -> embedding: p50 {e2e['p50']:.3f} s, p95 {e2e['p95']:.3f} s, "
              f"max {e2e['max']:.3f} s (target {result['target']}): "
              f"{'met' if result['met'] else 'MISSED'}")
    print(f"  -> {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
