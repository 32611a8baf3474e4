"""Semantic search over the stored embeddings (pgvector, cosine distance).

`search` runs an approximate top-k query on the HNSW index for dimensions that have one
(`embeddings_hnsw_1024`, migration 0002) and an exact scan for any other dimension. The index is
a partial expression index, so the approximate query repeats its expression and predicate
literally:

    ORDER BY embedding::vector(1024) <=> $q::vector(1024)  ...  WHERE embedding_dimensions = 1024

Anything else (an untyped `embedding <=> $q`, another typmod, a missing predicate) silently
turns into a sequential scan. The SQL is static text; every value (vector, model, user, limit,
settings) is a bound parameter. The pgvector settings are transaction-local (`set_config(...,
true)` is `SET LOCAL` with a bound value) and are applied inside the transaction that runs the
query, so a pooled connection never keeps them.

With a `user_id` filter the index scan is iterative (`hnsw.iterative_scan = relaxed_order`,
pgvector >= 0.8): the index keeps producing candidates until `limit` rows pass the filter (or
`hnsw.max_scan_tuples` is reached). The nearest rows are taken in a MATERIALIZED CTE and put back
into exact distance order outside it, as pgvector's documentation recommends for relaxed order.
If a user has so few rows that the scan gives up before finding `limit` of them, the same query
is answered exactly for that user (cheap, because such a user has few rows).

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

# Dimensions with an HNSW index (migrations/0002_hnsw.sql): dimensions -> index name.
INDEXED_DIMENSIONS: dict[int, str] = {1024: "embeddings_hnsw_1024"}
MAX_LIMIT = 1000  # hnsw.ef_search's upper bound; a larger top-k cannot come from the index
MAX_DIMENSIONS = 16_000  # pgvector's limit for `vector`

_COLUMNS = "n.item_id, n.user_id, a.category, a.summary, n.distance"

# Approximate: same expression and predicate as `embeddings_hnsw_1024`.
_HNSW_1024 = f"""
WITH nearest AS MATERIALIZED (
    SELECT e.item_id, e.user_id, e.analysis_id,
           e.embedding::vector(1024) <=> %(q)s::vector(1024) AS distance
    FROM embeddings e
    WHERE e.embedding_dimensions = 1024 AND e.embedding_model = %(model)s
    ORDER BY e.embedding::vector(1024) <=> %(q)s::vector(1024)
    LIMIT %(limit)s
)
SELECT {_COLUMNS} FROM nearest n JOIN analyses a ON a.id = n.analysis_id
ORDER BY n.distance, n.user_id, n.item_id
"""

_HNSW_1024_USER = f"""
WITH nearest AS MATERIALIZED (
    SELECT e.item_id, e.user_id, e.analysis_id,
           e.embedding::vector(1024) <=> %(q)s::vector(1024) AS distance
    FROM embeddings e
    WHERE e.embedding_dimensions = 1024 AND e.embedding_model = %(model)s
      AND e.user_id = %(user_id)s
    ORDER BY e.embedding::vector(1024) <=> %(q)s::vector(1024)
    LIMIT %(limit)s
)
SELECT {_COLUMNS} FROM nearest n JOIN analyses a ON a.id = n.analysis_id
ORDER BY n.distance, n.user_id, n.item_id
"""

# Exact: the untyped column matches no index expression, so this is a scan of the rows of that
# dimension (the predicate keeps vectors of other dimensions out of the distance operator).
_EXACT = f"""
WITH nearest AS MATERIALIZED (
    SELECT e.item_id, e.user_id, e.analysis_id,
           e.embedding <=> %(q)s::vector AS distance
    FROM embeddings e
    WHERE e.embedding_dimensions = %(dimensions)s AND e.embedding_model = %(model)s
    ORDER BY e.embedding <=> %(q)s::vector
    LIMIT %(limit)s
)
SELECT {_COLUMNS} FROM nearest n JOIN analyses a ON a.id = n.analysis_id
ORDER BY n.distance, n.user_id, n.item_id
"""

_EXACT_USER = f"""
WITH nearest AS MATERIALIZED (
    SELECT e.item_id, e.user_id, e.analysis_id,
           e.embedding <=> %(q)s::vector AS distance
    FROM embeddings e
    WHERE e.embedding_dimensions = %(dimensions)s AND e.embedding_model = %(model)s
      AND e.user_id = %(user_id)s
    ORDER BY e.embedding <=> %(q)s::vector
    LIMIT %(limit)s
)
SELECT {_COLUMNS} FROM nearest n JOIN analyses a ON a.id = n.analysis_id
ORDER BY n.distance, n.user_id, n.item_id
"""

_HNSW_QUERIES: dict[int, tuple[str, str]] = {1024: (_HNSW_1024, _HNSW_1024_USER)}

_SETTINGS = ("SELECT set_config('hnsw.ef_search', %s, true),"
             " set_config('hnsw.iterative_scan', %s, true)")


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

    `conn` is a psycopg 3 connection (autocommit or not; the query runs in its own transaction,
    or in a savepoint if one is open, in which case the settings last until the caller's
    transaction ends). `model` and `dimensions` select the vector space: only embeddings made by
    the same model are comparable. `ef_search` is the HNSW candidate list size (raised to
    `limit` if smaller); `exact=True` skips the index (ground truth for recall).
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
    sql = search_sql(dimensions, filtered=filtered, exact=not use_index)
    with conn.transaction(), conn.cursor() as cur:
        if use_index:
            cur.execute(_SETTINGS, (str(max(ef_search, limit)),
                                    "relaxed_order" if filtered else "off"))
        cur.execute(sql, params)
        rows = cur.fetchall()
        if use_index and filtered and len(rows) < limit:
            # The iterative scan stopped (hnsw.max_scan_tuples) before `limit` rows of this user
            # came up: a user that sparse is cheaper to answer exactly anyway.
            cur.execute(search_sql(dimensions, filtered=True, exact=True), params)
            rows = cur.fetchall()
    return [SearchHit(item_id=r[0], user_id=r[1], category=r[2], summary=r[3],
                      distance=float(r[4])) for r in rows]


def embed_query(text: str, *, provider: str, model: str, api_key: str | None = None,
                timeout_s: float = 30.0) -> list[float]:
    """Embed a search query with the pipeline's provider, so it is comparable to the documents.

    `local` is the offline feature-hashing model (`local-hash-v1`, 1024 dimensions); `voyage`
    calls the Voyage API with `input_type="query"` (the documents were embedded with
    `input_type="document"`).
    """
    if not text or not text.strip():
        raise ValueError("the query text is empty")
    embedding = _embedding_module()
    if provider == "local":
        if model != embedding.LOCAL_MODEL:
            raise ValueError(f"the local provider's model is {embedding.LOCAL_MODEL!r}, "
                             f"not {model!r}")
        return list(embedding.local_embed(text))
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
    """The query vector as a bound parameter: binary if pgvector's types are registered on the
    connection, else pgvector's text form (cast to `vector` in the SQL)."""
    floats = [float(v) for v in values]
    if len(floats) != dimensions:
        raise ValueError(f"the query vector has {len(floats)} dimensions, not {dimensions}")
    if not all(math.isfinite(v) for v in floats):
        raise ValueError("the query vector has a NaN or infinite component")
    if not any(floats):
        raise ValueError("the query vector is zero: cosine distance is undefined")
    import psycopg
    from psycopg.adapt import PyFormat
    from pgvector import Vector

    vector = Vector(floats)
    try:
        conn.adapters.get_dumper(Vector, PyFormat.AUTO)
    except psycopg.ProgrammingError:  # register_vector() was not called on this connection
        return vector.to_text()
    return vector
