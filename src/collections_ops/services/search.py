"""Semantic search over the stored embeddings (pgvector, cosine distance).

`search` runs an approximate top-k query on the HNSW index for dimensions that have one
(`embeddings_hnsw_1024`, migration 0002) and an exact scan for any other dimension. The index is
a partial expression index, so the approximate query repeats its expression and predicate
literally:

    ORDER BY embedding::vector(1024) <=> $q::vector(1024)  ...  WHERE embedding_dimensions = 1024

Anything else (an untyped `embedding <=> $q`, another typmod, a missing predicate) silently
turns into a sequential scan. The SQL is static text; every value (vector, model, user, limit,
settings) is a bound parameter, and statements are never prepared server-side, so every query is
planned with its own values (a cached generic plan does not know the LIMIT or the user).

Settings are transaction-local (`set_config(..., true)` is `SET LOCAL` with a bound value) and
applied inside the transaction (or, if the caller has one open, the savepoint) that runs the
query. That transaction is rolled back at the end - a search writes nothing - which also undoes
the settings, so neither a pooled connection nor the caller's own transaction keeps them:

- `hnsw.ef_search` (the candidate list; raised to `limit` if smaller);
- `enable_seqscan`, `enable_bitmapscan` and `enable_sort` off for the approximate query. The
  planner cannot price this table: the vectors are TOASTed, so a scan looks like 14 MB of heap
  when it reads 400 MB and computes 100,000 distances, and pgvector 0.8's HNSW estimate rises
  with ef_search. Measured on 100,000 rows (bench/bench_search.py): at ef_search = 100 it chose
  a parallel scan taking 200-350 ms over a 1-2 ms index scan. Without a Sort node the order can
  only come from the index;
- with a `user_id` filter, `hnsw.iterative_scan = relaxed_order` (pgvector >= 0.8): the index
  keeps producing candidates until `limit` rows pass the filter (or `hnsw.max_scan_tuples` is
  reached). The nearest rows are taken in a MATERIALIZED CTE and put back into exact distance
  order outside it, as pgvector's documentation recommends for relaxed order.

A filtered search for a user with fewer than `EXACT_SCAN_MAX_ROWS` embeddings of the model is
answered exactly instead (their rows through the (user_id, item_id, embedding_model) b-tree,
then a sort): that is both exact and faster than an index walk that must skip everybody else's
rows. If an iterative scan gives up before `limit` rows (a big user in a far bigger table), the
query is answered exactly too.

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
# Below this many embeddings of the model a user's search is exact (see the module docstring):
# ~5 ms for 1,000 rows of 1024 dimensions, where an iterative index scan has to step over
# everybody else's rows.
EXACT_SCAN_MAX_ROWS = 1000

# Approximate: same expression and predicate as `embeddings_hnsw_1024`.
_HNSW_1024 = """
WITH nearest AS MATERIALIZED (
    SELECT e.item_id, e.user_id, e.analysis_id,
           e.embedding::vector(1024) <=> %(q)s::vector(1024) AS distance
    FROM embeddings e
    WHERE e.embedding_dimensions = 1024 AND e.embedding_model = %(model)s
    ORDER BY e.embedding::vector(1024) <=> %(q)s::vector(1024)
    LIMIT %(limit)s
)
SELECT n.item_id, n.user_id, a.category, a.summary, n.distance
FROM nearest n JOIN analyses a ON a.id = n.analysis_id
ORDER BY n.distance, n.user_id, n.item_id
"""

_HNSW_1024_USER = """
WITH nearest AS MATERIALIZED (
    SELECT e.item_id, e.user_id, e.analysis_id,
           e.embedding::vector(1024) <=> %(q)s::vector(1024) AS distance
    FROM embeddings e
    WHERE e.embedding_dimensions = 1024 AND e.embedding_model = %(model)s
      AND e.user_id = %(user_id)s
    ORDER BY e.embedding::vector(1024) <=> %(q)s::vector(1024)
    LIMIT %(limit)s
)
SELECT n.item_id, n.user_id, a.category, a.summary, n.distance
FROM nearest n JOIN analyses a ON a.id = n.analysis_id
ORDER BY n.distance, n.user_id, n.item_id
"""

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

# Dimensions with an HNSW index (migrations/0002_hnsw.sql `embeddings_hnsw_1024`) -> the
# (unfiltered, filtered) queries that match it.
_HNSW_QUERIES: dict[int, tuple[str, str]] = {1024: (_HNSW_1024, _HNSW_1024_USER)}

# SET LOCAL, with bound values. The planner switches make the index the only way to produce the
# order (see the module docstring); they last until the end of the search's transaction.
SETTINGS_SQL = ("SELECT set_config('hnsw.ef_search', %s, true),"
                " set_config('hnsw.iterative_scan', %s, true),"
                " set_config('enable_seqscan', 'off', true),"
                " set_config('enable_bitmapscan', 'off', true),"
                " set_config('enable_sort', 'off', true)")
_PLANNER_DEFAULTS = ("SET LOCAL enable_seqscan TO DEFAULT; SET LOCAL enable_bitmapscan TO DEFAULT;"
                     " SET LOCAL enable_sort TO DEFAULT")
_USER_ROWS = """
SELECT count(*) FROM (
    SELECT 1 FROM embeddings
    WHERE user_id = %s AND embedding_model = %s AND embedding_dimensions = %s
    LIMIT %s
) AS capped
"""


def settings_params(*, ef_search: int, limit: int, filtered: bool) -> tuple[str, str]:
    """The parameters of `SETTINGS_SQL` for a search."""
    return str(max(ef_search, limit)), "relaxed_order" if filtered else "off"


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
    queries = None if exact else _HNSW_QUERIES.get(dimensions)
    if queries is None:
        return _EXACT_USER if filtered else _EXACT
    return queries[1] if filtered else queries[0]


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
    use_index = not exact and dimensions in _HNSW_QUERIES
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        if use_index and filtered:
            cur.execute(_USER_ROWS, (user_id, model, dimensions, EXACT_SCAN_MAX_ROWS),
                        prepare=False)
            row = cur.fetchone()
            use_index = row is not None and row[0] >= EXACT_SCAN_MAX_ROWS
        if use_index:
            cur.execute(SETTINGS_SQL, settings_params(ef_search=ef_search, limit=limit,
                                                      filtered=filtered), prepare=False)
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
