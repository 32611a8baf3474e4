"""Semantic search over the stored embeddings (pgvector, cosine distance).

`search` runs an approximate top-k query on an HNSW index when one serves the model -- the
dimension's (`embeddings_hnsw_1024`, `embeddings_hnsw_384`: migrations 0002, 0007) or the
model's own (`model_index_name`, built by `collections reembed`) -- and an exact scan otherwise.
The indexes are partial expression indexes, so the approximate query repeats the expression and
predicate literally:

    ORDER BY embedding::vector(1024) <=> $q::vector(1024)  ...  WHERE embedding_dimensions = 1024

Anything else (an untyped `embedding <=> $q`, another typmod, a missing predicate) silently
turns into a sequential scan. The SQL is static text but for the dimension, an integer checked
here; every value (vector, model, user, limit, settings) is a bound parameter, and statements
are never prepared server-side, so every query is planned with its own values (a cached generic
plan does not know the LIMIT, the user or the model a model's partial index names).

Settings are transaction-local (`set_config(..., true)` is `SET LOCAL` with a bound value) and
applied inside the transaction (or, if the caller has one open, the savepoint) that runs the
query. That transaction is rolled back at the end - a search writes nothing - which also undoes
the settings, so neither a pooled connection nor the caller's own transaction keeps them:

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

`embed_query` embeds a query text with the pipeline's own providers (`local`, `voyage`), so the
query lands in the same vector space as the stored documents.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from collections_ops import paths

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

# Approximate: the expression and predicate of the dimension's partial HNSW index
# (`embeddings_hnsw_<d>`, migrations 0002 and 0007) and of a model's own index
# (`model_index_name`, built by `collections reembed`), which also names the model. `{d}` is
# an integer this module checked (`_check_int`), the only text ever put into these statements.
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
# The dimensions the migrations index for every model (0002, 0007).
MIGRATION_INDEX_DIMENSIONS = (384, 1024)


def dimension_index_name(dimensions: int) -> str:
    """The migrations' index of one dimension (for every model of it)."""
    return f"embeddings_hnsw_{dimensions}"


def model_index_name(model: str) -> str:
    """The name of `model`'s own partial HNSW index (`collections reembed` builds it): a
    readable part and a hash of the whole name, within PostgreSQL's 63 characters."""
    import hashlib
    import re

    slug = re.sub(r"[^a-z0-9]+", "_", model.lower()).strip("_")[:32]
    return f"embeddings_hnsw_m_{slug}_{hashlib.sha256(model.encode()).hexdigest()[:8]}"


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
# order (see the module docstring); they last until the end of the search's transaction.
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
_PLANNER_DEFAULTS = ("SET LOCAL enable_seqscan TO DEFAULT; SET LOCAL enable_bitmapscan TO DEFAULT;"
                     " SET LOCAL enable_sort TO DEFAULT")
# Whether the server's pgvector has the iterative scan, whether a valid HNSW index serves the
# model (its dimension's or its own), and (for a filtered search) how many embeddings of the
# model the user has, capped at EXACT_SCAN_MAX_ROWS: one round trip.
_PLAN_FACTS = """
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


@dataclass(frozen=True)
class SearchHit:
    item_id: str
    user_id: str
    category: str
    summary: str
    distance: float  # cosine distance, 0 (same direction) .. 2 (opposite)

    @property
    def similarity(self) -> float:
        """Cosine similarity, 1 - distance."""
        return 1.0 - self.distance

    def as_dict(self) -> dict[str, Any]:
        return {**asdict(self), "similarity": self.similarity}


def search_sql(dimensions: int, *, filtered: bool, exact: bool = False) -> str:
    """The SQL `search` runs for these arguments (for EXPLAIN and benchmarks)."""
    dimensions = _check_int("dimensions", dimensions, 1, MAX_DIMENSIONS)
    if exact:
        return _EXACT_USER if filtered else _EXACT
    return _HNSW.format(d=dimensions, user=_USER_PREDICATE if filtered else "")


def search(conn: Any, query_vector: Sequence[float] | Any, *, model: str, dimensions: int,
           user_id: str | None = None, limit: int = 10, ef_search: int = 100,
           exact: bool = False) -> list[SearchHit]:
    """The `limit` stored items nearest to `query_vector` (cosine), nearest first.

    `conn` is a psycopg 3 connection, autocommit or not (the query runs in a transaction of its
    own, or a savepoint if one is open, rolled back at the end). `model` and `dimensions`
    select the vector space: only embeddings made by the same model are comparable. `user_id`
    keeps one user's items (see the module docstring for how). `ef_search` is the HNSW
    candidate list size (raised to `limit` if smaller); `exact=True` skips the index (the
    ground truth for recall).
    """
    dimensions = _check_int("dimensions", dimensions, 1, MAX_DIMENSIONS)
    limit = _check_int("limit", limit, 1, MAX_LIMIT)
    ef_search = _check_int("ef_search", ef_search, 1, MAX_LIMIT)
    if not model:
        raise ValueError("model is required: only embeddings of the same model are comparable")
    vector = _as_vector(conn, query_vector, dimensions)
    params: dict[str, Any] = {"q": vector, "model": model, "limit": limit,
                              "dimensions": dimensions, "user_id": user_id}
    filtered = user_id is not None
    use_index = not exact
    iterative = False
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        if use_index:
            cur.execute(_PLAN_FACTS, {**params, "cap": EXACT_SCAN_MAX_ROWS,
                                      "indexes": [dimension_index_name(dimensions),
                                                  model_index_name(model)]}, prepare=False)
            facts = cur.fetchone()
            iterative, indexed, user_rows = (
                (iterative_scan_available(facts[0]), bool(facts[1]), int(facts[2]))
                if facts else (False, False, 0))
            # No index: exact. A small user is answered exactly; without the iterative scan,
            # every user is.
            use_index = indexed and (
                not filtered or (iterative and user_rows >= EXACT_SCAN_MAX_ROWS))
        if use_index:
            ef, mode, tuples = settings_params(ef_search=ef_search, limit=limit,
                                               filtered=filtered)
            if iterative:
                cur.execute(SETTINGS_SQL, (ef, mode, tuples), prepare=False)
            else:
                cur.execute(SETTINGS_SQL_BEFORE_0_8, (ef,), prepare=False)
        cur.execute(search_sql(dimensions, filtered=filtered, exact=not use_index), params,
                    prepare=False)
        rows = cur.fetchall()
        if use_index and filtered and len(rows) < limit:
            # The iterative scan stopped (hnsw.max_scan_tuples) before `limit` rows of this user
            # came up: answer exactly, with the planner free again.
            cur.execute(_PLANNER_DEFAULTS, prepare=False)
            cur.execute(search_sql(dimensions, filtered=True, exact=True), params,
                        prepare=False)
            rows = cur.fetchall()
    return [SearchHit(item_id=r[0], user_id=r[1], category=r[2], summary=r[3],
                      distance=float(r[4])) for r in rows]


def search_model(route: Any, *, configured_model: str,
                 configured_provider: str) -> tuple[str, str]:
    """(model, provider) an environment's search embeds its query with: the model its database
    records as active (migration 0006, `collections reembed --activate`), or the configured
    one while none is recorded."""
    recorded = route.embedding_models()
    model = next((str(m["model"]) for m in recorded if m["state"] == "active"),
                 configured_model)
    embedding = _embedding_module()
    from collections_core import models

    return model, models.provider_of(model, configured_model=configured_model,
                                     configured_provider=configured_provider,
                                     local_models=tuple(embedding.LOCAL_MODELS))


def embed_query(text: str, *, provider: str, model: str, api_key: str | None = None,
                timeout_s: float = 30.0) -> list[float]:
    """Embed a search query with the pipeline's provider, so it is comparable to the documents.

    `local` is one of the offline models: `multilingual-e5-small-q4` (384 dimensions, searched
    exactly: the HNSW index is for 1024) embeds the query with e5's `query: ` prefix (the
    documents were embedded as passages); `local-hash-v1` is feature hashing (1024
    dimensions). `voyage` calls the Voyage API with `input_type="query"` (the documents were
    embedded with `input_type="document"`).
    """
    if not text or not text.strip():
        raise ValueError("the query text is empty")
    embedding = _embedding_module()
    if provider == "local":
        if model not in embedding.LOCAL_MODELS:
            raise ValueError(f"the local provider's models are "
                             f"{', '.join(map(repr, embedding.LOCAL_MODELS))}, not {model!r}")
        try:
            return list(embedding.local_embed_as(text, model=model, as_query=True))
        except embedding.ModelMissing as exc:
            raise ValueError(str(exc)) from None
    if provider == "voyage":
        if not api_key:
            raise ValueError("the voyage provider needs an API key (VOYAGE_API_KEY)")
        import time

        deadline = time.monotonic() + timeout_s
        vectors = embedding.voyage_embed([text], api_key=api_key, model=model,
                                         input_type="query",
                                         remaining_s=lambda: deadline - time.monotonic())
        return list(vectors[0])
    raise ValueError(f"unknown embedding provider {provider!r} (one of: local, voyage)")


def _embedding_module() -> Any:
    """lambdas/embedder/embedding.py, with the functions' shared code importable."""
    for directory in (paths.shared_code_dir(), paths.lambda_code_dir("embedder")):
        entry = str(directory)
        if entry not in sys.path:
            sys.path.insert(0, entry)
    import embedding

    return embedding


def _check_int(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}, not {value!r}")
    return value


def _as_vector(conn: Any, values: Sequence[float] | Any, dimensions: int) -> Any:
    """The query vector (a sequence of floats, a numpy array or a `pgvector.Vector`) as a bound
    parameter: binary if pgvector's types are registered on the connection, else pgvector's text
    form (cast to `vector` in the SQL)."""
    from pgvector import Vector

    if isinstance(values, Vector):
        floats = values.to_list()
    elif hasattr(values, "tolist"):  # a numpy array
        floats = [float(v) for v in values.tolist()]
    else:
        floats = [float(v) for v in values]
    if len(floats) != dimensions:
        raise ValueError(f"the query vector has {len(floats)} dimensions, not {dimensions}")
    if not all(math.isfinite(v) for v in floats):
        raise ValueError("the query vector has a NaN or infinite component")
    if not any(floats):
        raise ValueError("the query vector is zero: cosine distance is undefined")
    import psycopg
    from pgvector import Vector
    from psycopg.adapt import PyFormat

    vector = Vector(floats)
    try:
        conn.adapters.get_dumper(Vector, PyFormat.AUTO)
    except psycopg.ProgrammingError:  # register_vector() was not called on this connection
        return vector.to_text()
    return vector
