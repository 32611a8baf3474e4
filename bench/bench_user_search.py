"""Per-user search through the HNSW index: recall@10 with and without pgvector's iterative scan.

A user's search filters the index's candidates by `user_id`. Without an iterative scan the
index hands over `ef_search` candidates and the filter keeps the user's few among them, so a
user who owns 0.5% of the rows gets about half a row back at ef_search 100. With
`hnsw.iterative_scan = relaxed_order` (what `search` sets for a filtered query) the index keeps
producing candidates until `limit` rows pass the filter.

    .venv/bin/python bench/bench_user_search.py [--rows 50000] [--users 200] [--queries 200]

It reuses bench_search.py's data generator (clustered 1024-d unit vectors), embedded server,
migrations, binary COPY load and index build (the migration's index, m = 16,
ef_construction = 64), with users assigned uniformly (`--rows / --users` rows each). Each
held-out query is asked for one user (round robin, so every user is searched), three ways:
the index SQL of `search` with the iterative scan off, with it on (`relaxed_order`), and the
exact SQL, the truth. `search` itself answers users this small exactly
(`EXACT_SCAN_MAX_ROWS`); the index path is what a user above that threshold gets.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import bench_search as bs
import numpy as np
from _common import median, percentile, write_result

from collections_ops.services import search as search_service

NAME = "bench_user_search"
EF_SEARCH = 100  # search()'s default; --ef-search to try another
TARGET_GAP = 0.01  # the iterative scan's recall@10 within this of exact


def index_search(conn: Any, query: np.ndarray, user_id: str, *, iterative: bool,
                 ef_search: int) -> tuple[list[str], float]:
    """The service's filtered index SQL, with its settings, iterative scan on or off."""
    sql = search_service.search_sql(bs.DIM, filtered=True)
    params = {"q": query, "model": bs.MODEL, "limit": 10, "user_id": user_id,
              "dimensions": bs.DIM}
    ef, _mode = search_service.settings_params(ef_search=ef_search, limit=10, filtered=True)
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(search_service.SETTINGS_SQL, (ef, "relaxed_order" if iterative else "off"))
        rows = conn.execute(sql, params).fetchall()
    return [r[0] for r in rows], (time.perf_counter() - started) * 1000


def exact_search(conn: Any, query: np.ndarray, user_id: str) -> list[str]:
    hits = search_service.search(conn, query, model=bs.MODEL, dimensions=bs.DIM, limit=10,
                                 user_id=user_id, exact=True)
    return [h.item_id for h in hits]


def measure(conn: Any, queries: np.ndarray, users: int, ef_search: int) -> dict[str, Any]:
    truth, found = [], {"off": [], "relaxed_order": []}
    latency: dict[str, list[float]] = {"off": [], "relaxed_order": []}
    for i, q in enumerate(queries):
        user_id = f"user-{i % users:04d}"
        truth.append(exact_search(conn, q, user_id))
        for mode in found:
            ids, ms = index_search(conn, q, user_id, iterative=mode == "relaxed_order",
                                   ef_search=ef_search)
            found[mode].append(ids)
            latency[mode].append(ms)
    out: dict[str, Any] = {}
    for mode, results in found.items():
        recalls = bs.recall_at_10(results, truth)
        out[mode] = {"recall_at_10": round(float(np.mean(recalls)), 4),
                     "recall_at_10_min": round(min(recalls), 2),
                     "mean_rows_returned": round(float(np.mean([len(r) for r in results])), 2),
                     "p50_ms": round(median(latency[mode]), 2),
                     "p95_ms": round(percentile(latency[mode], 95), 2)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument("--users", type=int, default=200)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef-search", type=int, default=EF_SEARCH)
    args = parser.parse_args()
    clock = bs.Clock(3600)
    vectors, clusters = bs.generate(args.rows + args.queries)
    base, queries = vectors[:args.rows], vectors[args.rows:]
    owners = np.random.default_rng(5).integers(0, args.users, args.rows)
    result: dict[str, Any] = {"rows": args.rows, "users": args.users,
                              "queries": args.queries, "ef_search": args.ef_search,
                              "rows_per_user_min_max": [int(c) for c in (
                                  np.bincount(owners).min(), np.bincount(owners).max())]}
    with bs.database(keep=False) as (url, server_info):
        result["database"] = server_info
        conn = bs.connect(url)
        try:
            indexdef = bs.migrate(conn)
            result["load_s"] = bs.load(conn, base, owners, clusters[:args.rows])
            result["index"] = bs.build_index(conn, indexdef, 16, 64, clock)
            bs.prewarm(conn)
            result["pgvector"] = conn.execute("SELECT extversion FROM pg_extension"
                                              " WHERE extname = 'vector'").fetchone()[0]
            result["by_mode"] = measure(conn, queries, args.users, args.ef_search)
        finally:
            conn.execute(f"DROP SCHEMA IF EXISTS {bs.SCHEMA} CASCADE")
            conn.close()
    modes = result["by_mode"]
    gap = 1.0 - modes["relaxed_order"]["recall_at_10"]
    result["target"] = f"iterative scan recall@10 within {TARGET_GAP} of exact"
    result["met"] = gap <= TARGET_GAP
    for mode, figures in modes.items():
        print(f"  iterative_scan={mode:13s} recall@10 {figures['recall_at_10']:.4f} "
              f"(min {figures['recall_at_10_min']}), rows {figures['mean_rows_returned']}, "
              f"p50 {figures['p50_ms']} ms, p95 {figures['p95_ms']} ms")
    print(f"  target {result['target']}: {'met' if result['met'] else 'MISSED'}")
    print(f"  -> {write_result(NAME, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
