"""`collections reconcile local` over 10,000 items: how long the full comparison takes.

Starts the embedded local cloud (state in $COLLECTIONS_STATE_DIR/local, default
/tmp/bench-reconcile-state/local), removes the images bucket's notification so that the
population below triggers nothing, then writes N originals and N thumbnails to moto (8 threads)
and N items, analyses and embeddings rows (1024 dimensions, the embedder's own content hash)
with COPY. One item in a hundred is left inconsistent (a missing thumbnail, analysis or
embedding, in turn), so the scan has something to find. It then runs the command as an operator
does, `collections reconcile local --min-age 0 -o json`, `--runs` times, and reports the wall
time of each run and the time the command itself measured. The local cloud is destroyed at the
end.

    .venv/bin/python bench/bench_reconcile.py [--items 10000] [--runs 3]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import destroy_local_cloud, median, start_local_cloud, write_result

os.environ.setdefault("COLLECTIONS_STATE_DIR", "/tmp/bench-reconcile-state")
STATE_ROOT = Path(os.environ["COLLECTIONS_STATE_DIR"])
STATE_DIR = STATE_ROOT / "local"
NAME = "bench_reconcile"
TARGET_S = 20.0
USERS = 20
SEQ = "0" * 16 + "00000000000000A1"


def _populate(state: Any, count: int) -> dict[str, int]:
    import psycopg
    from botocore.config import Config

    from collections_ops.localcloud.aws import iam
    from collections_ops.services import reconcile_classify

    session = iam.admin_session(state.state_dir, state.region)
    s3 = session.client("s3", endpoint_url=state.endpoint_url,
                        config=Config(max_pool_connections=16))
    s3.put_bucket_notification_configuration(Bucket=state.images_bucket,
                                             NotificationConfiguration={})
    keys = [f"user{n % USERS:02d}/img-{n:05d}.jpg" for n in range(count)]
    missing = {"thumbnail": set(keys[1::300]), "analysis": set(keys[101::300]),
               "embedding": set(keys[201::300])}

    def put(job: tuple[str, str]) -> None:
        s3.put_object(Bucket=job[0], Key=job[1], Body=b"x" * 64)

    jobs = [(state.images_bucket, k) for k in keys]
    jobs += [(state.thumbnails_bucket, k) for k in keys if k not in missing["thumbnail"]]
    t0 = time.perf_counter()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, jobs))
    print(f"put {len(jobs)} objects in {time.perf_counter() - t0:.1f} s", flush=True)

    t0 = time.perf_counter()
    with psycopg.connect(state.database_url, autocommit=True) as conn:
        conn.execute("TRUNCATE items, analyses, embeddings RESTART IDENTITY CASCADE")
        with conn.cursor() as cur, cur.copy(
                "COPY items (id, user_id, bucket, original_key, thumbnail_bucket, thumbnail_key,"
                " etag, sequencer) FROM STDIN") as copy:
            for k in keys:
                user, name = k.split("/")
                copy.write_row((name[:-4], user, state.images_bucket, k,
                                state.thumbnails_bucket, k, '"e"', SEQ))
        analysed = [k for k in keys if k not in missing["analysis"]]
        with conn.cursor() as cur, cur.copy(
                "COPY analyses (item_id, user_id, category, summary, tags, provider, model,"
                " source_etag, source_sequencer, raw) FROM STDIN") as copy:
            for k in analysed:
                user, name = k.split("/")
                copy.write_row((name[:-4], user, "photo", f"image {name}", "{bench}", "local",
                                "local", '"e"', SEQ, "{}"))
        conn.execute("CREATE TEMP TABLE wanted (user_id text, item_id text, content_hash text)")
        with conn.cursor() as cur, cur.copy("COPY wanted FROM STDIN") as copy:
            for k in analysed:
                if k in missing["embedding"]:
                    continue
                user, name = k.split("/")
                row = {"category": "photo", "summary": f"image {name}", "description": "",
                       "tags": ["bench"], "colors": [], "text_content": None}
                copy.write_row((user, name[:-4], reconcile_classify.content_hash(row)))
        conn.execute(
            "INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model,"
            " embedding_dimensions, embedding, content_hash)"
            " SELECT w.item_id, w.user_id, a.id, 'local-hash-v1', 1024,"
            " array_fill(0.03125::real, ARRAY[1024])::vector, w.content_hash"
            " FROM wanted w JOIN analyses a USING (user_id, item_id)")
    print(f"wrote the rows in {time.perf_counter() - t0:.1f} s", flush=True)
    return {k: len(v) for k, v in missing.items()}


def _run_command() -> tuple[float, dict[str, Any]]:
    collections = Path(sys.executable).parent / "collections"
    t0 = time.perf_counter()
    proc = subprocess.run([str(collections), "reconcile", "local", "--min-age", "0", "-o",
                           "json"], capture_output=True, text=True, check=False, timeout=600,
                          env={**os.environ, "COLLECTIONS_STATE_DIR": str(STATE_ROOT)})
    wall = time.perf_counter() - t0
    if proc.returncode not in (0, 8):
        raise SystemExit(f"reconcile exited {proc.returncode}: {proc.stderr}")
    return wall, json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    state, start_s = start_local_cloud(STATE_DIR)
    try:
        planted = _populate(state, args.items)
        runs = []
        for _ in range(args.runs):
            wall, report = _run_command()
            runs.append({"wall_s": round(wall, 3), "service_s": report["seconds"],
                         "counts": {k: v for k, v in report["counts"].items() if v},
                         "scanned": report["scanned"]})
            print(f"reconcile: {wall:.2f} s wall, {report['seconds']:.2f} s in the service, "
                  f"found {runs[-1]['counts']}", flush=True)
        walls = [r["wall_s"] for r in runs]
        result = {"items": args.items, "planted": planted,
                  "local_cloud_start_s": round(start_s, 2), "runs": runs,
                  "median_wall_s": median(walls), "target_s": TARGET_S,
                  "met": max(walls) <= TARGET_S, "loadavg_after_runs": _load()}
        path = write_result(NAME, result)  # before the teardown, which may be slow
        print(f"median {median(walls):.2f} s (target ≤ {TARGET_S} s) -> {path}", flush=True)
    finally:
        destroy_local_cloud(STATE_ROOT)


def _load() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


if __name__ == "__main__":
    main()
