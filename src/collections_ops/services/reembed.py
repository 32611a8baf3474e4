"""`collections reembed`: fill a second embedding model's vectors from the stored analyses, then
switch search to it, then drop the old model's rows -- three steps an operator takes apart.

1. `start`: the model is recorded as `filling` (collections_core/models.py), so from then on the
   embedder embeds every new analysis with it as well, and the fill never falls behind.
2. `fill_local` (the local cloud, in process with the offline models) or `fan_out` (AWS: one
   `AnalysisComplete` event per analysis that lacks the model's vector, naming the model, so the
   embedder -- and its provider key -- does the work). What is embedded is each analysis's
   document text, read from the database: no image is looked at and no vision model called.
   Resumable by construction: an analysis is pending while it has no vector of the model as new
   as itself, and each batch commits its rows at once, so an interrupted fill resumed later
   embeds only what it had not stored -- never a stored row twice.
3. `activate`: in one transaction the old active model is retired and this one made active:
   every search after the commit embeds its query with the new model, none sees a mixture.
4. `drop`: the retired models' rows, their own indexes and their records go.

The model's own partial HNSW index (`collections_core.search.model_index_name`) is built
concurrently after the fill, so its writes were never slowed by it and search takes the index
path at once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from collections_ops import errors

BATCH = 32
EVENTS_PER_CALL = 10  # PutEvents' limit
CHARS_PER_TOKEN = 4.0  # a rough rule for English text; the estimate says it is one

_PENDING = """
SELECT a.id, a.item_id, a.user_id, a.category, a.summary, a.description, a.tags, a.colors,
       a.text_content, a.correlation_id
FROM analyses a
WHERE a.id > %(after)s
  AND NOT EXISTS (SELECT 1 FROM embeddings e
                  WHERE e.user_id = a.user_id AND e.item_id = a.item_id
                    AND e.embedding_model = %(model)s AND e.analysis_id = a.id
                    AND e.updated_at >= a.updated_at)
ORDER BY a.id
LIMIT %(limit)s
"""
_COUNT_PENDING = """
SELECT count(*) FROM analyses a
WHERE NOT EXISTS (SELECT 1 FROM embeddings e
                  WHERE e.user_id = a.user_id AND e.item_id = a.item_id
                    AND e.embedding_model = %(model)s AND e.analysis_id = a.id
                    AND e.updated_at >= a.updated_at)
"""
_UPSERT = """
INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model, embedding_dimensions,
                        embedding, content_hash, correlation_id, embedding_provider)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (user_id, item_id, embedding_model) DO UPDATE SET
    analysis_id = EXCLUDED.analysis_id, embedding_dimensions = EXCLUDED.embedding_dimensions,
    embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash,
    embedding_provider = EXCLUDED.embedding_provider, input_tokens = NULL, updated_at = now()
"""
_START = """
INSERT INTO embedding_models (model, dimensions, state) VALUES (%s, %s, 'filling')
ON CONFLICT (model) DO UPDATE SET state = 'filling'
    WHERE embedding_models.state = 'retired' AND embedding_models.dimensions = EXCLUDED.dimensions
RETURNING state
"""


@dataclass(frozen=True)
class Progress:
    model: str
    embedded: int  # by this run
    pending: int  # still to do


@dataclass
class Outcome:
    model: str
    dimensions: int
    provider: str
    embedded: int = 0
    events_sent: int = 0
    pending: int = 0
    index: str | None = None
    activated: bool = False
    dropped: list[str] | None = None
    estimate: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _core() -> Any:
    from collections_core import models

    return models


def _embedding() -> Any:
    from collections_ops.services import search

    return search._embedding_module()


def _rules() -> Any:
    """What the embedder embeds of an analysis, its hash and the models' dimensions."""
    from collections_core import embedding_rules

    return embedding_rules


def dimensions_of(model: str) -> int:
    known = _rules().MODEL_DIMENSIONS.get(model)
    if known is None:
        raise errors.UsageError(f"unknown embedding model {model!r}",
                                "one of: " + ", ".join(sorted(_rules().MODEL_DIMENSIONS)))
    return int(known)


def registry(conn: Any) -> list[Any]:
    with conn.cursor() as cur:
        return list(_core().registered(cur))


def start(conn: Any, model: str) -> int:
    """Record `model` as filling (a retired one comes back; the active one stays active);
    returns its dimensions."""
    dimensions = dimensions_of(model)
    recorded = {m.model: m for m in registry(conn)}
    if model in recorded and recorded[model].dimensions != dimensions:
        raise errors.UsageError(f"{model} is recorded with {recorded[model].dimensions} "
                                f"dimensions, not {dimensions}")
    if recorded.get(model) is None or recorded[model].state == "retired":
        conn.execute(_START, (model, dimensions))
    return dimensions


def pending(conn: Any, model: str) -> int:
    row = conn.execute(_COUNT_PENDING, {"model": model}).fetchone()
    return int(row[0]) if row else 0


def local_embedder(model: str) -> Callable[[list[str]], list[list[float]]]:
    """The offline model's document embedding, text by text (what the embedder computes)."""
    local_models = _rules().LOCAL_MODELS
    if model not in local_models:
        raise errors.UsageError(f"{model} is not an offline model; the local cloud embeds with "
                                + ", ".join(local_models))
    embedding = _embedding()

    def embed(texts: list[str]) -> list[list[float]]:
        try:
            return [list(embedding.local_embed_as(t, model=model, as_query=False))
                    for t in texts]
        except embedding.ModelMissing as exc:
            raise errors.ConfigError(exc.reason, exc.hint) from None

    return embed


def fill_local(conn: Any, model: str, embed: Callable[[list[str]], list[list[float]]], *,
               batch: int = BATCH) -> Iterator[Progress]:
    """Embed every pending analysis with `model` in process, a committed batch at a time,
    yielding progress after each commit."""
    from pgvector import Vector

    rules = _rules()
    dimensions = dimensions_of(model)
    left, done, after = pending(conn, model), 0, 0
    while True:
        rows = conn.execute(_PENDING, {"after": after, "model": model, "limit": batch}
                            ).fetchall()
        if not rows:
            return
        texts = [rules.document_text(dict(zip(
            ("category", "summary", "description", "tags", "colors", "text_content"), r[3:9],
            strict=True))) for r in rows]
        vectors = embed(texts)
        with conn.transaction():
            for r, text, vector in zip(rows, texts, vectors, strict=True):
                if len(vector) != dimensions:
                    raise errors.CollectionsError(f"{model} returned a {len(vector)}-"
                                                  f"dimensional vector; it makes {dimensions}")
                conn.execute(_UPSERT, (r[1], r[2], r[0], model, dimensions, Vector(vector),
                                       rules.content_hash(text), r[9],
                                       "local"))
        after = int(rows[-1][0])
        done += len(rows)
        left = max(0, left - len(rows))
        yield Progress(model, done, left)


def estimate(conn: Any, model: str, prices: Any) -> dict[str, Any]:
    """What filling `model` through its provider would cost: the pending analyses' document
    texts, at CHARS_PER_TOKEN characters a token, at the price table's input price."""
    rules = _rules()
    chars, count, after = 0, 0, 0
    while rows := conn.execute(_PENDING, {"after": after, "model": model, "limit": 1000}
                               ).fetchall():
        for r in rows:
            chars += len(rules.document_text(dict(zip(
                ("category", "summary", "description", "tags", "colors", "text_content"),
                r[3:9], strict=True))))
        count += len(rows)
        after = int(rows[-1][0])
    tokens = round(chars / CHARS_PER_TOKEN)
    price = (prices.tokens_per_million.get(model) or {}).get("input")
    return {"analyses": count, "estimated_tokens": tokens,
            "usd_per_million_tokens": price, "prices_as_of": str(prices.as_of),
            "estimated_usd": None if price is None else round(tokens * price / 1e6, 6)}


def fan_out(conn: Any, events: Any, *, bus: str, source: str, detail_type: str,
            model: str) -> Iterator[Progress]:
    """AWS: one AnalysisComplete event per pending analysis, naming `model`, for the embedder
    to embed (with its provider and key); a refused entry is an error, never skipped."""
    import json

    sent, after = 0, 0
    total = pending(conn, model)
    while rows := conn.execute(_PENDING, {"after": after, "model": model,
                                          "limit": EVENTS_PER_CALL}).fetchall():
        entries = [{"Source": source, "DetailType": detail_type, "EventBusName": bus,
                    "Detail": json.dumps({"item_id": r[1], "user_id": r[2],
                                          "analysis_id": r[0], "embedding_model": model,
                                          "correlation_id": r[9]})} for r in rows]
        answer = events.put_events(Entries=entries)
        if answer.get("FailedEntryCount"):
            raise errors.CollectionsError(
                f"EventBridge refused {answer['FailedEntryCount']} of {len(entries)} events",
                "run reembed again: what was sent is not sent twice once embedded")
        sent += len(rows)
        after = int(rows[-1][0])
        yield Progress(model, sent, max(0, total - sent))


def build_index(conn: Any, model: str, dimensions: int) -> str:
    """The model's own partial HNSW index, built concurrently (the connection must be in
    autocommit), recorded in the registry."""
    from psycopg import sql

    from collections_core import search

    name = search.model_index_name(model)
    conn.execute(sql.SQL(
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS {name} ON embeddings USING hnsw"
        " ((embedding::vector({d})) vector_cosine_ops)"
        " WHERE embedding_model = {model} AND embedding_dimensions = {d}").format(
            name=sql.Identifier(name), d=sql.Literal(dimensions), model=sql.Literal(model)))
    conn.execute("UPDATE embedding_models SET index_name = %s WHERE model = %s", (name, model))
    return name


def activate(conn: Any, model: str) -> None:
    """Make `model` the active one, atomically; refused while analyses lack its vector."""
    with conn.transaction():
        conn.execute("LOCK TABLE embedding_models IN SHARE ROW EXCLUSIVE MODE")
        left = pending(conn, model)
        if left:
            raise errors.UsageError(f"{left} analyses have no {model} vector yet",
                                    f"run: collections reembed ENV --model {model}")
        conn.execute("UPDATE embedding_models SET state = 'retired'"
                     " WHERE state = 'active' AND model <> %s", (model,))
        row = conn.execute("UPDATE embedding_models SET state = 'active', activated_at = now()"
                           " WHERE model = %s RETURNING model", (model,)).fetchone()
        if row is None:
            raise errors.UsageError(f"{model} is not recorded",
                                    f"run: collections reembed ENV --model {model}")


def drop(conn: Any, model: str) -> list[str]:
    """Remove every retired model's rows, own index and record; `model` must be active."""
    from psycopg import sql

    recorded = registry(conn)
    if not any(m.model == model and m.state == "active" for m in recorded):
        raise errors.UsageError(f"{model} is not the active model: drop removes the models it "
                                "replaced", f"run: collections reembed ENV --model {model} "
                                "--activate")
    dropped = []
    for m in recorded:
        if m.state != "retired":
            continue
        with conn.transaction():
            conn.execute("DELETE FROM embeddings WHERE embedding_model = %s", (m.model,))
            conn.execute("DELETE FROM embedding_models WHERE model = %s", (m.model,))
        if m.index_name:
            conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                sql.Identifier(m.index_name)))
        dropped.append(m.model)
    return dropped


def provider_for(model: str, env: Any) -> str:
    return str(_core().provider_of(model, configured_model=env.embedding_model,
                                   configured_provider=env.embedding_provider,
                                   local_models=tuple(_rules().LOCAL_MODELS)))


def direct_connection(route: Any) -> Any:
    if getattr(route, "kind", None) != "direct":
        raise errors.DatabaseError(
            "reembed writes the model registry and needs a direct database connection; "
            f"this environment is reached through {route.description}",
            "open a tunnel to the database (SSM port forwarding) and set DATABASE_URL")
    return route.conn


def models_table(conn: Any) -> Sequence[dict[str, Any]]:
    rows = dict(conn.execute("SELECT embedding_model, count(*) FROM embeddings"
                             " GROUP BY embedding_model").fetchall())
    return [{**m._asdict(), "rows": int(rows.get(m.model, 0))} for m in registry(conn)]
