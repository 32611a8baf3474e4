"""The nearest-neighbour search's statements and plan, once for both routes to the database.

The CLI searches directly (its `services/search.py`) and, where the database is
private, through the operations function's `search` named query (`queries.py`, beside
this module); both run `nearest` on a cursor of their own, in a transaction they roll back, so
the two routes send the same statements with the same settings (tests/unit/test_operations.py
compares their answers on one database).

An approximate query runs on an HNSW index when one serves the model -- the dimension's
(`embeddings_hnsw_1024`, `embeddings_hnsw_384`: migrations 0002, 0007) or the model's own
(`model_index_name`, built by `collections reembed`) -- and an exact scan otherwise. The indexes
are partial expression indexes, so the approximate query repeats the expression and predicate
literally:

    ORDER BY embedding::vector(1024) <=> $q::vector(1024)  ...  WHERE embedding_dimensions = 1024

Anything else (an untyped `embedding <=> $q`, another typmod, a missing predicate) silently
turns into a sequential scan. The SQL is static text but for the dimension, an integer checked
here; every value (vector, model, user, limit, settings) is a bound parameter, and statements
are never prepared server-side, so every query is planned with its own values (a cached generic
plan does not know the LIMIT, the user or the model a model's partial index names).

Settings are transaction-local (`set_config(..., true)` is `SET LOCAL` with a bound value) and
last until the caller's transaction (or savepoint) is rolled back -- a search writes nothing --
so neither a pooled connection nor the caller's own transaction keeps them:

- `hnsw.ef_search` (the candidate list; raised to `limit` if smaller, and for one user's search
  to FILTERED_EF_SEARCH);
- `enable_seqscan`, `enable_bitmapscan` and `enable_sort` off for the approximate query. The
  planner cannot price this table: the vectors are TOASTed, so a scan looks like 14 MB of heap
  when it reads 400 MB and computes 100,000 distances, and pgvector 0.8's HNSW estimate rises
  with ef_search. Measured on 100,000 rows (bench/bench_search.py): at ef_search = 100 it chose
  a parallel scan taking 200-350 ms over a 1-2 ms index scan. Without a Sort node the order can
  only come from the index;
- `hnsw.iterative_scan = relaxed_order` and `hnsw.max_scan_tuples` (pgvector >= 0.8): the
  index keeps producing candidates until `limit` rows pass the filter (the user, the model).
  The nearest rows are taken in a MATERIALIZED CTE and put back into exact distance order
  outside it, as pgvector's documentation recommends for relaxed order.

One user's search is answered exactly when the user has fewer than `EXACT_SCAN_MAX_ROWS`
embeddings of the model (their rows through the (user_id, item_id, embedding_model) b-tree, then
a sort): the iterative scan walks the same graph as an unfiltered one and inherits its misses,
so it is not within 0.01 of exact for small users at any ef_search, while the exact scan of a
few thousand rows costs tens of milliseconds (figures at EXACT_SCAN_MAX_ROWS). On a pgvector
older than 0.8 (no iterative scan) every user's search is exact. If an iterative scan gives up
before `limit` rows (hnsw.max_scan_tuples), the query is answered exactly too.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

MAX_LIMIT = 1000  # hnsw.ef_search's upper bound; a larger top-k cannot come from the index
MAX_DIMENSIONS = 16_000  # pgvector's limit for `vector`
# Measured by bench/bench_user_search.py (docs/benchmarks.md), 50,000 rows of 1024-d: an exact
# scan of one user's rows costs p50 9 ms at 1,000 rows, 19 ms at 2,500, 33 ms at 5,000, 88 ms
# at 10,000 (recall 1.0); the iterative index scan at ef_search 100 reaches recall@10 0.963 at
# 250 rows, 0.987 at 1,000, 0.98 at 2,500 and 0.963 at 10,000 (one query found nothing right),
# and at ef_search 400 0.993 at 5,000 and 0.997 at 10,000 rows. So a user with fewer than
# EXACT_SCAN_MAX_ROWS embeddings of the model is answered exactly, and a bigger one through the
# index with ef_search at least FILTERED_EF_SEARCH.
EXACT_SCAN_MAX_ROWS = 5000
FILTERED_EF_SEARCH = 400
MAX_SCAN_TUPLES = 20_000  # pgvector's default, set explicitly: the iterative scan's bound
# The dimensions the migrations index for every model (0002, 0007).
MIGRATION_INDEX_DIMENSIONS = (384, 1024)

# Approximate: the expression and predicate of the dimension's partial HNSW index and of a
# model's own index, which also names the model. `{d}` is an integer `search_sql` checked, the
# only text ever put into these statements.
_HNSW = """
WITH nearest AS MATERIALIZED (
    SELECT e.item_id, e.user_id, e.analysis_id,
           e.embedding::vector({d}) <=> %(q)s::vector({d}) AS distance
    FROM embeddings e
    WHERE e.embedding_dimensions = {d} AND e.embedding_model = %(model)s{user}
    ORDER BY e.embedding::vector({d}) <=> %(q)s::vector({d})
    LIMIT %(limit)s
)
SELECT n.item_id, n.user_id, a.category, a.summary, n.distance
FROM nearest n JOIN analyses a ON a.id = n.analysis_id
ORDER BY n.distance, n.user_id, n.item_id
"""
_USER_PREDICATE = "\n      AND e.user_id = %(user_id)s"

# Exact: the untyped column matches no index expression, so this is a scan of the rows of that
# dimension (the predicate keeps vectors of other dimensions out of the distance operator).
_EXACT = """
WITH nearest AS MATERIALIZED (
    SELECT e.item_id, e.user_id, e.analysis_id,
           e.embedding <=> %(q)s::vector AS distance
    FROM embeddings e
    WHERE e.embedding_dimensions = %(dimensions)s AND e.embedding_model = %(model)s
    ORDER BY e.embedding <=> %(q)s::vector
    LIMIT %(limit)s
)
SELECT n.item_id, n.user_id, a.category, a.summary, n.distance
FROM nearest n JOIN analyses a ON a.id = n.analysis_id
ORDER BY n.distance, n.user_id, n.item_id
"""

_EXACT_USER = """
WITH nearest AS MATERIALIZED (
    SELECT e.item_id, e.user_id, e.analysis_id,
           e.embedding <=> %(q)s::vector AS distance
    FROM embeddings e
    WHERE e.embedding_dimensions = %(dimensions)s AND e.embedding_model = %(model)s
      AND e.user_id = %(user_id)s
    ORDER BY e.embedding <=> %(q)s::vector
    LIMIT %(limit)s
)
SELECT n.item_id, n.user_id, a.category, a.summary, n.distance
FROM nearest n JOIN analyses a ON a.id = n.analysis_id
ORDER BY n.distance, n.user_id, n.item_id
"""

# SET LOCAL, with bound values. The planner switches make the index the only way to produce the
# order (see the module docstring).
SETTINGS_SQL = ("SELECT set_config('hnsw.ef_search', %s, true),"
                " set_config('hnsw.iterative_scan', %s, true),"
                " set_config('hnsw.max_scan_tuples', %s, true),"
                " set_config('enable_seqscan', 'off', true),"
                " set_config('enable_bitmapscan', 'off', true),"
                " set_config('enable_sort', 'off', true)")
# pgvector < 0.8 has neither iterative_scan nor max_scan_tuples (and reserves the `hnsw.`
# prefix, so setting either is an error): an unfiltered search sets ef_search only, a filtered
# one is answered exactly.
SETTINGS_SQL_BEFORE_0_8 = ("SELECT set_config('hnsw.ef_search', %s, true),"
                           " set_config('enable_seqscan', 'off', true),"
                           " set_config('enable_bitmapscan', 'off', true),"
                           " set_config('enable_sort', 'off', true)")
PLANNER_DEFAULTS_SQL = ("SET LOCAL enable_seqscan TO DEFAULT;"
                        " SET LOCAL enable_bitmapscan TO DEFAULT;"
                        " SET LOCAL enable_sort TO DEFAULT")
# Whether the server's pgvector has the iterative scan, whether a valid HNSW index serves the
# model (its dimension's or its own), and (for a filtered search) how many embeddings of the
# model the user has, capped at EXACT_SCAN_MAX_ROWS: one round trip.
PLAN_FACTS_SQL = """
SELECT (SELECT extversion FROM pg_extension WHERE extname = 'vector'),
       EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
               WHERE i.indisvalid AND i.indrelid = 'embeddings'::regclass
                 AND c.relname = ANY(%(indexes)s)),
       (SELECT count(*) FROM (
            SELECT 1 FROM embeddings
            WHERE user_id = %(user_id)s AND embedding_model = %(model)s
              AND embedding_dimensions = %(dimensions)s
            LIMIT %(cap)s) AS capped)
"""


def check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, not {value!r}")
    return value


def dimension_index_name(dimensions: int) -> str:
    """The migrations' index of one dimension (for every model of it)."""
    return f"embeddings_hnsw_{dimensions}"


def model_index_name(model: str) -> str:
    """The name of `model`'s own partial HNSW index (`collections reembed` builds it): a
    readable part and a hash of the whole name, within PostgreSQL's 63 characters."""
    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:32]
    return f"embeddings_hnsw_m_{slug}_{hashlib.sha256(model.encode()).hexdigest()[:8]}"


def search_sql(dimensions: int, *, filtered: bool, exact: bool = False) -> str:
    """The statement for these arguments (for `nearest`, EXPLAIN and benchmarks)."""
    dimensions = check_int("dimensions", dimensions, 1, MAX_DIMENSIONS)
    if exact:
        return _EXACT_USER if filtered else _EXACT
    return _HNSW.format(d=dimensions, user=_USER_PREDICATE if filtered else "")


def settings_params(*, ef_search: int, limit: int, filtered: bool) -> tuple[str, str, str]:
    """The parameters of `SETTINGS_SQL` for a search: ef_search (at least `limit`, and for a
    user's search at least FILTERED_EF_SEARCH), the iterative scan mode, max_scan_tuples.
    Relaxed order for an unfiltered search too: its model is a filter when another model of
    the same dimension shares the dimension's index (while `reembed` fills one)."""
    floor = max(limit, FILTERED_EF_SEARCH) if filtered else limit
    return str(max(ef_search, floor)), "relaxed_order", str(MAX_SCAN_TUPLES)


def iterative_scan_available(extversion: str | None) -> bool:
    """Whether a pgvector of this version (`pg_extension.extversion`) has
    `hnsw.iterative_scan` and `hnsw.max_scan_tuples` (0.8.0 and later)."""
    if not extversion:
        return False
    parts = [int(p) if p.isdigit() else 0 for p in extversion.split(".")]
    return parts >= [0, 8]


def nearest(cur: Any, *, q: Any, model: str, dimensions: int, user_id: str | None,
            limit: int, ef_search: int, exact: bool) -> list[tuple[Any, ...]]:
    """The `limit` rows (item_id, user_id, category, summary, distance) nearest to `q` (a bound
    vector parameter), nearest first, run on `cur` inside a transaction the caller rolls back
    (the settings are transaction-local). Arguments are the caller's checked values."""
    params: dict[str, Any] = {"q": q, "model": model, "limit": limit,
                              "dimensions": dimensions, "user_id": user_id}
    filtered = user_id is not None
    use_index = not exact
    iterative = False
    if use_index:
        cur.execute(PLAN_FACTS_SQL, {**params, "cap": EXACT_SCAN_MAX_ROWS, "indexes": [
            dimension_index_name(dimensions), model_index_name(model)]}, prepare=False)
        facts = cur.fetchone()
        iterative, indexed, user_rows = (
            (iterative_scan_available(facts[0]), bool(facts[1]), int(facts[2]))
            if facts else (False, False, 0))
        # No index: exact. A small user is answered exactly; without the iterative scan,
        # every user is.
        use_index = indexed and (
            not filtered or (iterative and user_rows >= EXACT_SCAN_MAX_ROWS))
    if use_index:
        ef, mode, tuples = settings_params(ef_search=ef_search, limit=limit, filtered=filtered)
        if iterative:
            cur.execute(SETTINGS_SQL, (ef, mode, tuples), prepare=False)
        else:
            cur.execute(SETTINGS_SQL_BEFORE_0_8, (ef,), prepare=False)
    cur.execute(search_sql(dimensions, filtered=filtered, exact=not use_index), params,
                prepare=False)
    rows: list[tuple[Any, ...]] = cur.fetchall()
    if use_index and filtered and len(rows) < limit:
        # The iterative scan stopped (hnsw.max_scan_tuples) before `limit` rows of this user
        # came up: answer exactly, with the planner free again.
        cur.execute(PLANNER_DEFAULTS_SQL, prepare=False)
        cur.execute(search_sql(dimensions, filtered=True, exact=True), params, prepare=False)
        rows = cur.fetchall()
    return rows
