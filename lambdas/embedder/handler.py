"""Embedder: `AnalysisComplete` -> read the analysis -> embed -> `embeddings` row (pgvector).

The event's claim is checked before anything is paid for: the item (user_id, item_id) must
exist and the analysis it names must be that item's analysis. What is embedded is read from the
database, never taken from the event; anything that does not match is a terminal refusal
(`ClaimRefused`), with no provider call and no write.

The analysis may not be visible yet when the event arrives (another region of the same
transaction race, or a replica): that is retryable, not a failure. An unchanged analysis that is
already embedded with the same model is not embedded again. The provider's reported token count
is stored with the embedding (`collections cost` prices it).

Which models: the database's active one (collections_core/models.py; the configured
EMBEDDING_MODEL while none is recorded, and the first stored vector records it) and every model
`collections reembed` is filling, so a fill never falls behind new uploads. An event that names
`embedding_model` (reembed's fan-out on AWS) is embedded with that model only, and only if it is
active or filling.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any

import embedding
from collections_core import db, embedding_rules, events, log, models, runtime, secrets
from collections_core.config import Settings
from collections_core.errors import (
    ClaimRefused,
    ConfigurationError,
    RetryableError,
    TerminalError,
)

logger = log.get_logger("collections.embedder")
# Imported at init, before the first request (and inside a SnapStart snapshot).
runtime.preload("psycopg", "pgvector.psycopg",
                {"voyage": "voyageai"}.get(os.environ.get("EMBEDDING_PROVIDER", "")))
FUNCTION_KEY = "embedder"
REQUIRED_DETAIL = ("item_id", "user_id", "analysis_id")
PROVIDER_KEYS = {"voyage": "VOYAGE_API_KEY"}


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.invoke(FUNCTION_KEY, event, context, _embed_event)


def _embed_event(event: Any, context: Any) -> dict[str, Any]:
    settings = Settings.from_environ()
    detail = events.detail(event, source=settings.analysis_complete_source,
                           detail_type=settings.analysis_complete_detail_type,
                           required=REQUIRED_DETAIL)
    user_id, item_id = events.user_id(detail["user_id"]), events.item_id(str(detail["item_id"]))
    log.bind(item_id=item_id, user_id=user_id)
    log.event(logger, "EventBridge event received", stage="received")
    # The secrets this invocation may read, in one SSM call.
    secrets.prefetch(required=(db.secret_name(), PROVIDER_KEYS.get(settings.embedding_provider)))

    analysis = _fetch_analysis(user_id, item_id, _claimed_analysis_id(detail["analysis_id"]))
    log.bind(correlation_id=analysis["correlation_id"])
    log.event(logger, "Analysis fetched from database", stage="fetched",
              analysis_id=analysis["id"])
    text = embedding_rules.document_text(analysis)
    content_hash = embedding_rules.content_hash(text)
    targets = _models_to_embed(settings.embedding_model, detail.get("embedding_model"))
    results = [_embed_with(model, settings, user_id, item_id, analysis, text, content_hash,
                           context) for model in targets]
    if len(results) == 1:
        return results[0]
    return {"status": "embedded" if any(r["status"] == "embedded" for r in results)
            else "duplicate", "models": dict(zip(targets, results, strict=True))}


def _models_to_embed(configured: str, named: Any) -> list[str]:
    with db.transaction() as cur:
        recorded = models.registered(cur, in_use_only=True)
    targets = models.embedding_targets(recorded, configured)
    if named is None:
        return targets
    try:
        name = models.check_model_name(named)
    except ValueError as exc:
        raise ClaimRefused(f"refused: {exc}") from None
    if name not in targets:
        raise ClaimRefused(f"refused: {name} is neither the active model nor one being filled")
    return [name]


def _embed_with(model: str, settings: Settings, user_id: str, item_id: str,
                analysis: dict[str, Any], text: str, content_hash: str,
                context: Any) -> dict[str, Any]:
    if _already_embedded(user_id, item_id, model, content_hash):
        log.event(logger, "already embedded this analysis", outcome="duplicate", model=model)
        return {"status": "duplicate"}

    started = time.perf_counter()
    provider = models.provider_of(model, configured_model=settings.embedding_model,
                                  configured_provider=settings.embedding_provider,
                                  local_models=embedding_rules.LOCAL_MODELS)
    vector, input_tokens = _embed(provider, model, text, context)
    _check_vector(vector, model)
    log.event(logger, "Embedding generated", stage="embedded", model=model,
              dimensions=len(vector), input_tokens=input_tokens,
              duration_ms=round((time.perf_counter() - started) * 1000, 1))
    embedding_id = _store(user_id, item_id, analysis["id"], model, vector, content_hash,
                          analysis["correlation_id"], provider=provider, input_tokens=input_tokens)
    log.event(logger, "Embedding stored in pgvector", stage="stored", embedding_id=embedding_id,
              dimensions=len(vector), model=model)
    return {"status": "embedded", "embedding_id": embedding_id, "dimensions": len(vector)}


def _claimed_analysis_id(value: Any) -> int:
    text = str(value)
    if isinstance(value, bool) or not text.isdigit() or len(text) > events.MAX_NUMBER_ID_CHARS:
        raise ClaimRefused("refused: the analysis id is not a number")
    return int(text)


def _fetch_analysis(user_id: str, item_id: str, claimed_id: int) -> dict[str, Any]:
    """The item's analysis, if it is the one the event names."""
    keys = ("id", "category", "summary", "description", "tags", "colors", "text_content",
            "correlation_id")
    with db.transaction() as cur:
        cur.execute(
            "SELECT a.id, a.category, a.summary, a.description, a.tags, a.colors,"
            " a.text_content, a.correlation_id, i.id IS NOT NULL"
            " FROM (SELECT 1) AS one"
            " LEFT JOIN items i ON i.user_id = %s AND i.id = %s"
            " LEFT JOIN analyses a ON a.user_id = i.user_id AND a.item_id = i.id",
            (user_id, item_id))
        row = cur.fetchone()
    assert row is not None
    if not row[-1]:
        raise ClaimRefused(f"refused: there is no item {user_id}/{item_id}")
    if row[0] is None:
        raise RetryableError(f"analysis of {user_id}/{item_id} is not visible yet")
    if int(row[0]) != claimed_id:
        raise ClaimRefused(f"refused: analysis {claimed_id} is not the analysis of item "
                           f"{user_id}/{item_id}")
    return dict(zip(keys, row[:-1], strict=True))


def _already_embedded(user_id: str, item_id: str, model: str, content_hash: str) -> bool:
    with db.transaction() as cur:
        cur.execute(
            "SELECT 1 FROM embeddings WHERE user_id = %s AND item_id = %s"
            " AND embedding_model = %s AND content_hash = %s",
            (user_id, item_id, model, content_hash))
        return cur.fetchone() is not None


def _embed(provider: str, model: str, text: str, context: Any) -> tuple[list[float], int | None]:
    """The text's vector and the tokens the provider reported for it (local: none)."""
    if provider == "local":
        return embedding.local_embed_as(text, model=model, as_query=False), None
    if provider == "voyage":
        key = secrets.get("VOYAGE_API_KEY")
        assert key is not None
        reported = embedding.voyage_embed_reported(
            [text], api_key=key, model=model, input_type="document",
            remaining_s=runtime.remaining_seconds(context))
        return reported.vectors[0], reported.input_tokens
    raise ConfigurationError(f"unknown embedding provider {provider!r}",
                             hint="EMBEDDING_PROVIDER is one of voyage, local")


def _check_vector(vector: list[float], model: str) -> None:
    if not vector:
        raise TerminalError("the provider returned an empty embedding")
    expected = embedding_rules.MODEL_DIMENSIONS.get(model)
    if expected is not None and len(vector) != expected:
        raise TerminalError(f"{model} returned a {len(vector)}-dimensional vector; "
                            f"it makes {expected}")
    norm = math.sqrt(sum(v * v for v in vector))
    if not math.isfinite(norm) or norm == 0:
        raise TerminalError("the provider returned a degenerate embedding (zero or NaN norm)")


_UPSERT = """
INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model, embedding_dimensions,
                        embedding, content_hash, correlation_id, embedding_provider,
                        input_tokens)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)
ON CONFLICT (user_id, item_id, embedding_model) DO UPDATE SET
    analysis_id = EXCLUDED.analysis_id, embedding_dimensions = EXCLUDED.embedding_dimensions,
    embedding = EXCLUDED.embedding, content_hash = EXCLUDED.content_hash,
    correlation_id = EXCLUDED.correlation_id, embedding_provider = EXCLUDED.embedding_provider,
    input_tokens = EXCLUDED.input_tokens, updated_at = now()
RETURNING id
"""


def _store(user_id: str, item_id: str, analysis_id: int, model: str, vector: list[float],
           content_hash: str, correlation_id: str | None, *, provider: str,
           input_tokens: int | None) -> int:
    """Upsert the item's embedding for `model`; its token count is this call's (a re-embedding
    replaces it, so a row is one call's tokens). A database with no active model records this
    one (collections_core/models.py)."""
    import psycopg
    from pgvector import Vector

    try:
        with db.transaction() as cur:
            cur.execute(_UPSERT, (item_id, user_id, analysis_id, model, len(vector),
                                  Vector(vector), content_hash, correlation_id, provider,
                                  input_tokens))
            row = cur.fetchone()
            cur.execute(models.RECORD_ACTIVE_SQL, (model, len(vector)))
    except psycopg.errors.ForeignKeyViolation:
        raise RetryableError(f"analysis {analysis_id} is not visible yet") from None
    except psycopg.errors.CheckViolation:
        raise TerminalError("the embedding's dimension does not match its record") from None
    assert row is not None
    return int(row[0])
