"""Semantic search over the stored embeddings (pgvector, cosine distance), the CLI's direct route.

The statements, the settings and the choice between the HNSW index and an exact scan are
`collections_core.search`'s (the functions' shared package), which the operations function's
`search` named query runs too, so both routes to a database answer alike; its docstring says
why each statement is as it is. Here: the arguments are checked, the query vector is made a
bound parameter, and the search runs in a transaction (or savepoint) of its own, rolled back.

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


def search(conn: Any, query_vector: Sequence[float] | Any, *, model: str, dimensions: int,
           user_id: str | None = None, limit: int = 10, ef_search: int = 100,
           exact: bool = False) -> list[SearchHit]:
    """The `limit` stored items nearest to `query_vector` (cosine), nearest first.

    `conn` is a psycopg 3 connection, autocommit or not (the query runs in a transaction of its
    own, or a savepoint if one is open, rolled back at the end). `model` and `dimensions`
    select the vector space: only embeddings made by the same model are comparable. `user_id`
    keeps one user's items (collections_core.search says how). `ef_search` is the HNSW
    candidate list size (raised to `limit` if smaller); `exact=True` skips the index (the
    ground truth for recall).
    """
    from collections_core import search as core

    dimensions = core.check_int("dimensions", dimensions, 1, core.MAX_DIMENSIONS)
    limit = core.check_int("limit", limit, 1, core.MAX_LIMIT)
    ef_search = core.check_int("ef_search", ef_search, 1, core.MAX_LIMIT)
    if not model:
        raise ValueError("model is required: only embeddings of the same model are comparable")
    vector = _as_vector(conn, query_vector, dimensions)
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        rows = core.nearest(cur, q=vector, model=model, dimensions=dimensions, user_id=user_id,
                            limit=limit, ef_search=ef_search, exact=exact)
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
    from collections_core import embedding_rules, models

    return model, models.provider_of(model, configured_model=configured_model,
                                     configured_provider=configured_provider,
                                     local_models=tuple(embedding_rules.LOCAL_MODELS))


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
    from collections_core.embedding_rules import LOCAL_MODELS

    embedding = _embedding_module()
    if provider == "local":
        if model not in LOCAL_MODELS:
            raise ValueError(f"the local provider's models are "
                             f"{', '.join(map(repr, LOCAL_MODELS))}, not {model!r}")
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
    """lambdas/embedder/embedding.py: a query is embedded by the embedder's own provider calls
    (which stay in the function, beside the SDKs its bundle vendors); what it embeds and the
    models' dimensions are the installed collections_core.embedding_rules."""
    entry = str(paths.lambda_code_dir("embedder"))
    if entry not in sys.path:
        sys.path.insert(0, entry)
    import embedding

    return embedding


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
