"""Per-user search: recall@10 and latency of each way to answer one user's top 10, by user size.

A user's search filters the HNSW index's candidates by `user_id`. Without an iterative scan
the index hands over `ef_search` candidates and the filter keeps the user's few among them. With
`hnsw.iterative_scan = relaxed_order` the index keeps producing candidates until `limit` rows
pass the filter, but it walks the same graph, so it inherits the graph's misses. An exact scan
of the user's own rows (through the (user_id, item_id, embedding_model) b-tree) is recall 1.0 by
construction and costs one distance per row of the user. This bench measures both against user
size, which is how `search` chooses (`EXACT_SCAN_MAX_ROWS`, in collections_core/search.py),
and then `search` itself.

    .venv/bin/python bench/bench_user_search.py [--queries 100] [--ef-search 100,400,1000]

It reuses bench_search.py's data generator (clustered 1024-d unit vectors), embedded server,
migrations, binary COPY load and index build (the migration's index, m = 16,
ef_construction = 64). 50,000 rows belong to users of five sizes (USER_GROUPS: 40 users of
250 rows, 10 of 1,000, 4 of 2,500, 2 of 5,000, one of 10,000); each group is asked `--queries`
held-out queries (round robin over its users), every way, and scored against the exact answer.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import bench_search as bs
import numpy as np
from _common import median, percentile, write_result

from collections_core import search as core_search
from collections_ops.services import search as search_service

NAME = "bench_user_search"
# (users, rows each): 50,000 rows in all
USER_GROUPS = ((40, 250), (10, 1000), (4, 2500), (2, 5000), (1, 10_000))
TARGET_GAP = 0.01  # recall@10 within this of exact


def owners_of(rows_total: int) -> tuple[np.ndarray, list[list[str]]]:
    """Each row's user number (shuffled, so a user's rows are spread over the table) and the
    user ids of each group."""
    owners: list[int] = []
    groups: list[list[str]] = []
    user = 0
    for count, rows in USER_GROUPS:
        groups.append([f"user-{u:04d}" for u in range(user, user + count)])
        for _ in range(count):
            owners += [user] * rows
            user += 1
    assert len(owners) == rows_total, len(owners)
    return np.random.default_rng(5).permutation(np.array(owners)), groups


def index_search(conn: Any, query: np.ndarray, user_id: str, *, mode: str,
                 ef_search: int) -> tuple[list[str], float]:
    """The service's filtered index SQL under its settings, with this iterative scan mode."""
    sql = core_search.search_sql(bs.DIM, filtered=True)
    params = {"q": query, "model": bs.MODEL, "limit": 10, "user_id": user_id,
              "dimensions": bs.DIM}
    # This ef_search as it is (settings_params would raise a user's to FILTERED_EF_SEARCH).
    _ef, _mode, tuples = core_search.settings_params(ef_search=ef_search, limit=10,
                                                        filtered=True)
    started = time.perf_counter()
    with conn.transaction():
        conn.execute(core_search.SETTINGS_SQL, (str(max(ef_search, 10)), mode, tuples))
        rows = conn.execute(sql, params).fetchall()
    return [r[0] for r in rows], (time.perf_counter() - started) * 1000


def exact_search(conn: Any, query: np.ndarray, user_id: str) -> tuple[list[str], float]:
    started = time.perf_counter()
    hits = search_service.search(conn, query, model=bs.MODEL, dimensions=bs.DIM, limit=10,
                                 user_id=user_id, exact=True)
    return [h.item_id for h in hits], (time.perf_counter() - started) * 1000


def service_search(conn: Any, query: np.ndarray, user_id: str) -> tuple[list[str], float]:
    started = time.perf_counter()
    hits = search_service.search(conn, query, model=bs.MODEL, dimensions=bs.DIM, limit=10,
                                 user_id=user_id)
    return [h.item_id for h in hits], (time.perf_counter() - started) * 1000


def figures(results: list[list[str]], truth: list[list[str]], ms: list[float]
            ) -> dict[str, Any]:
    recalls = bs.recall_at_10(results, truth)
    return {"recall_at_10": round(float(np.mean(recalls)), 4),
            "recall_at_10_min": round(min(recalls), 2),
            "p50_ms": round(median(ms), 2), "p95_ms": round(percentile(ms, 95), 2)}


def measure(conn: Any, queries: np.ndarray, groups: list[list[str]], per_group: int,
            efs: list[int]) -> list[dict[str, Any]]:
    ways = ["exact", "iterative off ef 100",
            *(f"relaxed_order ef {ef}" for ef in efs), "search()"]
    out = []
    q = 0
    for (_count, rows), users in zip(USER_GROUPS, groups, strict=True):
        truth: list[list[str]] = []
        found: dict[str, list[list[str]]] = {w: [] for w in ways}
        ms: dict[str, list[float]] = {w: [] for w in ways}
        for n in range(per_group):
            query, user_id = queries[q], users[n % len(users)]
            q += 1
            ids, t = exact_search(conn, query, user_id)
            truth.append(ids)
            found["exact"].append(ids)
            ms["exact"].append(t)
            for way in ways[1:-1]:
                mode = "off" if way.startswith("iterative off") else "relaxed_order"
                ids, t = index_search(conn, query, user_id, mode=mode,
                                      ef_search=int(way.rsplit(" ", 1)[1]))
                found[way].append(ids)
                ms[way].append(t)
            ids, t = service_search(conn, query, user_id)
            found["search()"].append(ids)
            ms["search()"].append(t)
        out.append({"rows_per_user": rows, "users": len(users),
                    "by_way": {w: figures(found[w], truth, ms[w]) for w in ways}})
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=100, help="per user size")
    parser.add_argument("--ef-search", default="100,400,1000",
                        help="ef_search values for the iterative scan, comma-separated")
    args = parser.parse_args()
    efs = [int(v) for v in args.ef_search.split(",")]
    rows_total = sum(count * rows for count, rows in USER_GROUPS)
    clock = bs.Clock(3600)
    vectors, clusters = bs.generate(rows_total + args.queries * len(USER_GROUPS))
    base, queries = vectors[:rows_total], vectors[rows_total:]
    owners, groups = owners_of(rows_total)
    result: dict[str, Any] = {"rows": rows_total, "user_groups": USER_GROUPS,
                              "queries_per_group": args.queries,
                              "exact_scan_max_rows": core_search.EXACT_SCAN_MAX_ROWS}
    with bs.database(keep=False) as (url, server_info):
        result["database"] = server_info
        conn = bs.connect(url)
        try:
            indexdef = bs.migrate(conn)
            result["load_s"] = bs.load(conn, base, owners, clusters[:rows_total])
            result["index"] = bs.build_index(conn, indexdef, 16, 64, clock)
            bs.prewarm(conn)
            result["pgvector"] = conn.execute("SELECT extversion FROM pg_extension"
                                              " WHERE extname = 'vector'").fetchone()[0]
            result["by_user_size"] = measure(conn, queries, groups, args.queries, efs)
        finally:
            conn.execute(f"DROP SCHEMA IF EXISTS {bs.SCHEMA} CASCADE")
            conn.close()
    worst = min(g["by_way"]["search()"]["recall_at_10"] for g in result["by_user_size"])
    result["target"] = f"search() recall@10 within {TARGET_GAP} of exact at every user size"
    result["met"] = 1.0 - worst <= TARGET_GAP
    for group in result["by_user_size"]:
        print(f"  {group['rows_per_user']:>6} rows per user ({group['users']} users)")
        for way, f in group["by_way"].items():
            print(f"    {way:22s} recall@10 {f['recall_at_10']:.4f} (min "
                  f"{f['recall_at_10_min']}), p50 {f['p50_ms']} ms, p95 {f['p95_ms']} ms")
    print(f"  target {result['target']}: {'met' if result['met'] else 'MISSED'}")
    print(f"  -> {write_result(NAME, result)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
