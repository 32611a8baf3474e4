"""Analyzer: `ImageProcessed` -> vision analysis -> `analyses` row -> `AnalysisComplete` event.

An event is a claim, never a fact: EventBridge does not authenticate a custom `source`, so
anyone allowed to put events on the bus can send one. Before any download or model call the
claim is checked against the source of truth, the `items` row of (user_id, item_id): the object
must be in this environment's images bucket, under the key the row records; the version
analysed is the row's (its sequencer and ETag, and the download is conditional on that ETag),
whatever the event says. A claimed sequencer must be an S3 sequencer and not newer than the
row's. Anything else is a terminal refusal (`ClaimRefused`): logged with its reason, parked in
the dead-letter queue, no model call, nothing written.

A redelivered event for an image that is already analyzed (the same ETag, even under a newer
sequencer) does not pay for a second model call: the stored analysis is announced again instead.
Two deliveries at the same moment take turns (`_one_at_a_time`), so the second finds the first's
analysis rather than paying too. The provider's reported token usage
is stored with the analysis (`collections cost` prices it).
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import tracing
import vision
from collections_core import aws, db, events, images, log, runtime, secrets
from collections_core.config import Settings
from collections_core.errors import (
    ClaimRefused,
    ConfigurationError,
    RetryableError,
    TerminalError,
)
from collections_core.usage import Usage

logger = log.get_logger("collections.analyzer")
# Imported at init, before the first request (and inside a SnapStart snapshot): the selected
# provider's SDK too, the largest import of all.
runtime.preload("PIL.Image", "psycopg", "pgvector.psycopg",
                {"anthropic": "anthropic", "openai": "openai"}.get(
                    os.environ.get("ANALYZER_PROVIDER", "")))
FUNCTION_KEY = "analyzer"
REQUIRED_DETAIL = ("item_id", "user_id", "bucket", "original_key")
PROVIDER_KEYS = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}
LOCK_MARGIN_S = 10  # of the invocation's time left after waiting for another's analysis


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.invoke(FUNCTION_KEY, event, context, _analyze_event)


class Version(NamedTuple):
    """The version of an item to analyse, as its `items` row records it."""

    bucket: str
    key: str
    sequencer: str
    etag: str | None
    correlation_id: str | None


def _analyze_event(event: Any, context: Any) -> dict[str, Any]:
    settings = Settings.from_environ()
    detail = events.detail(event, source=settings.image_processed_source,
                           detail_type=settings.image_processed_detail_type,
                           required=REQUIRED_DETAIL)
    user_id, item_id = events.user_id(detail["user_id"]), events.item_id(str(detail["item_id"]))
    log.bind(item_id=item_id, user_id=user_id)
    log.event(logger, "EventBridge event received", stage="received")
    # Every secret this invocation may read, in one SSM call (one round trip, not three).
    secrets.prefetch(required=(db.secret_name(), PROVIDER_KEYS.get(settings.analyzer_provider)),
                     optional=("LANGSMITH_API_KEY",))
    version = verified_version(settings, detail, user_id, item_id)
    if version is None:
        log.event(logger, "skipped: the event is for an older version of this item",
                  outcome="stale")
        return {"status": "stale"}
    log.bind(correlation_id=version.correlation_id)

    with _one_at_a_time(user_id, item_id, context):
        existing = _existing(user_id, item_id)
        if existing and _same_object(existing, version):
            _advance(user_id, item_id, version)
            stored = None
        else:
            stored = _analyze(settings, user_id, item_id, version, context)
            if stored is None:
                log.event(logger, "skipped: the object changed since its row was stored; its "
                          "own event follows", outcome="stale")
                return {"status": "stale"}
    if stored is None:
        assert existing is not None
        log.event(logger, "already analyzed this version; announcing it again", outcome="duplicate")
        _publish(settings, user_id, item_id, version, existing["id"], existing["category"],
                 existing["provider"], existing["model"])
        return {"status": "duplicate", "analysis_id": existing["id"]}
    analysis_id, category = stored
    _publish(settings, user_id, item_id, version, analysis_id, category,
             settings.analyzer_provider, settings.analyzer_model)
    return {"status": "analyzed", "analysis_id": analysis_id}


def _analyze(settings: Settings, user_id: str, item_id: str, version: Version,
             context: Any) -> tuple[int, str] | None:
    """Download the version, ask the model, store the analysis: its id and category; None when
    the object changed since its row was stored."""
    started = time.perf_counter()
    data = _download(version)
    if data is None:
        return None
    log.event(logger, "Image downloaded", stage="downloaded", bytes=len(data),
              duration_ms=_ms(started))

    started = time.perf_counter()
    rendered, source = images.render_small(data, vision.MODEL_MAX_EDGE,
                                             quality=vision.RENDITION_QUALITY)
    provider, model = settings.analyzer_provider, settings.analyzer_model
    reported = tracing.traced(
        lambda: _run_provider(provider, model, rendered, source, context),
        api_key=secrets.get("LANGSMITH_API_KEY", required=False),
        inputs={"item_id": item_id, "user_id": user_id, "provider": provider, "model": model,
                "image_bytes": len(rendered.data), "correlation_id": version.correlation_id},
        env_name=settings.env_name, outputs=_trace_outputs)
    analysis, usage = vision.validate(reported.analysis), reported.usage
    log.event(logger, "LLM analysis complete", stage="analyzed", provider=provider, model=model,
              category=analysis["category"], input_tokens=usage.input_tokens,
              output_tokens=usage.output_tokens, duration_ms=_ms(started))

    analysis_id = _store(user_id, item_id, analysis, provider, model, version, usage)
    log.event(logger, "Analysis stored in PostgreSQL", stage="stored", analysis_id=analysis_id)
    return analysis_id, str(analysis["category"])


@contextmanager
def _one_at_a_time(user_id: str, item_id: str, context: Any) -> Iterator[None]:
    """One analysis of an item at a time. Two deliveries of its event at the same moment (S3
    and EventBridge deliver at least once, sometimes twice at once) would both find no analysis
    and both pay for a model call; instead the second waits here until the first has stored
    its analysis, then finds it and announces it. The lock is PostgreSQL's, taken by the
    transaction the analysis is stored in (the statements inside run as its savepoints), so it
    is released exactly when the analysis becomes visible, and by the server if the invocation
    dies. A wait that would outlast the invocation is left to Lambda's retry."""
    import psycopg

    wait_ms = max(1, int((runtime.remaining_seconds(context)() - LOCK_MARGIN_S) * 1000))
    with db.transaction() as cur:
        cur.execute("SELECT set_config('lock_timeout', %s, true),"
                    " set_config('statement_timeout', %s, true)",
                    (f"{wait_ms}ms", f"{wait_ms + 1000}ms"))
        try:
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                        (f"collections.analysis:{user_id}/{item_id}",))
        except psycopg.errors.LockNotAvailable:
            raise RetryableError("another invocation is still analysing this item") from None
        cur.execute("SELECT set_config('statement_timeout', %s, true)",
                    (f"{db.STATEMENT_TIMEOUT_MS}ms",))
        yield


def verified_version(settings: Settings, detail: dict[str, Any], user_id: str,
                     item_id: str) -> Version | None:
    """The version the event's claim names, checked against the item's row; None when the
    event is for an older version than the row's (a late delivery, nothing to do)."""
    bucket, key = str(detail["bucket"]), str(detail["original_key"])
    if bucket != settings.images_bucket:
        raise ClaimRefused(f"refused: s3://{bucket}/{key} is not in this environment's images "
                           f"bucket ({settings.images_bucket})")
    claimed = detail.get("sequencer")
    try:
        claimed_key = events.sequencer_key(str(claimed)) if claimed not in (None, "") else None
    except TerminalError as exc:
        raise ClaimRefused(f"refused: {exc.reason}") from None
    with db.transaction() as cur:
        cur.execute("SELECT bucket, original_key, sequencer, etag, correlation_id FROM items"
                    " WHERE user_id = %s AND id = %s", (user_id, item_id))
        row = cur.fetchone()
    if row is None:
        raise ClaimRefused(f"refused: there is no item {user_id}/{item_id}",
                           hint="the image processor stores the item before announcing it")
    version = Version(bucket=row[0], key=row[1], sequencer=row[2] or "", etag=row[3],
                      correlation_id=row[4])
    if (version.bucket, version.key) != (bucket, key):
        raise ClaimRefused(f"refused: the event names {key!r}, but item {user_id}/{item_id} is "
                           f"the object {version.key!r}")
    if claimed_key is not None and claimed_key > version.sequencer:
        raise ClaimRefused("refused: the event claims a newer version than the item's row "
                           "records")
    if claimed_key is not None and claimed_key < version.sequencer:
        return None
    return version


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _trace_outputs(reported: vision.Analysed) -> dict[str, Any]:
    """What a LangSmith run records of an analysis: a few fields and the reported tokens."""
    outputs = {k: reported.analysis.get(k) for k in ("category", "summary", "tags", "confidence")}
    used = reported.usage
    if used.input_tokens is not None and used.output_tokens is not None:
        outputs["usage_metadata"] = {"input_tokens": used.input_tokens,
                                     "output_tokens": used.output_tokens,
                                     "total_tokens": used.input_tokens + used.output_tokens}
    return outputs


def _run_provider(provider: str, model: str, rendered: images.Rendered, source: images.Source,
                  context: Any) -> vision.Analysed:
    if provider == "local":
        from PIL import Image

        with Image.open(io.BytesIO(rendered.data)) as small:
            small.load()
            return vision.Analysed(vision.local_analysis(
                small, {"width": source.width, "height": source.height,
                        "camera": source.camera}, model=model))
    if provider == "anthropic":
        key = secrets.get("ANTHROPIC_API_KEY")
        assert key is not None
        return vision.anthropic_analysis(rendered.data, api_key=key, model=model,
                                         remaining_s=runtime.remaining_seconds(context))
    if provider == "openai":
        key = secrets.get("OPENAI_API_KEY")
        assert key is not None
        return vision.openai_analysis(rendered.data, api_key=key, model=model,
                                      remaining_s=runtime.remaining_seconds(context))
    raise ConfigurationError(f"unknown analyzer provider {provider!r}",
                             hint="ANALYZER_PROVIDER is one of anthropic, openai, local")


def _download(version: Version) -> bytes | None:
    """The bytes of exactly the version the row records (conditional on its ETag); None when
    the object has been overwritten since."""
    bucket, key = version.bucket, version.key
    extra = {"IfMatch": version.etag} if version.etag else {}
    try:
        response = aws.client("s3").get_object(Bucket=bucket, Key=key, **extra)
    except Exception as exc:
        code = aws.error_code(exc)
        if code in ("PreconditionFailed", "412"):
            return None
        if code in ("NoSuchKey", "NoSuchBucket", "404", "NotFound"):
            raise TerminalError(f"s3://{bucket}/{key} does not exist") from None
        raise aws.classify(exc, f"reading s3://{bucket}/{key}") from None
    if int(response.get("ContentLength") or 0) > images.MAX_BYTES:
        raise TerminalError("the image is larger than the pipeline accepts")
    return bytes(response["Body"].read(images.MAX_BYTES + 1))


def _same_object(existing: dict[str, Any], version: Version) -> bool:
    """Whether the stored analysis is of the bytes the row records. The ETag names the content:
    a second notification of one upload, or the same bytes uploaded again, has a new sequencer
    and the same ETag, and is not worth a second model call (as the embedder does not embed an
    unchanged text twice). Without an ETag only the very same sequencer is the same object."""
    if version.etag:
        return bool(existing["source_etag"] == version.etag)
    return bool(version.sequencer) and existing["source_etag"] is None \
        and existing["source_sequencer"] == version.sequencer


def _advance(user_id: str, item_id: str, version: Version) -> None:
    """Record that the stored analysis is of the row's version (the same bytes under a newer
    sequencer), so that `reconcile` does not call it stale. No model call, no new analysis."""
    with db.transaction() as cur:
        cur.execute("UPDATE analyses SET source_sequencer = %s"
                    " WHERE user_id = %s AND item_id = %s AND source_sequencer < %s",
                    (version.sequencer, user_id, item_id, version.sequencer))


def _existing(user_id: str, item_id: str) -> dict[str, Any] | None:
    with db.transaction() as cur:
        cur.execute(
            "SELECT id, source_sequencer, source_etag, category, provider, model FROM analyses"
            " WHERE user_id = %s AND item_id = %s", (user_id, item_id))
        row = cur.fetchone()
    if row is None:
        return None
    return dict(zip(("id", "source_sequencer", "source_etag", "category", "provider", "model"),
                    row, strict=True))


_UPSERT = """
INSERT INTO analyses (item_id, user_id, category, summary, description, tags, colors,
                      text_content, provider, model, source_etag, source_sequencer, raw,
                      correlation_id, input_tokens, output_tokens)
VALUES (%(item_id)s, %(user_id)s, %(category)s, %(summary)s, %(description)s, %(tags)s,
        %(colors)s, %(text_content)s, %(provider)s, %(model)s, %(source_etag)s,
        %(source_sequencer)s, %(raw)s, %(correlation_id)s, %(input_tokens)s, %(output_tokens)s)
ON CONFLICT (user_id, item_id) DO UPDATE SET
    category = EXCLUDED.category, summary = EXCLUDED.summary,
    description = EXCLUDED.description, tags = EXCLUDED.tags, colors = EXCLUDED.colors,
    text_content = EXCLUDED.text_content, provider = EXCLUDED.provider, model = EXCLUDED.model,
    source_etag = EXCLUDED.source_etag, source_sequencer = EXCLUDED.source_sequencer,
    raw = EXCLUDED.raw, correlation_id = EXCLUDED.correlation_id,
    input_tokens = EXCLUDED.input_tokens, output_tokens = EXCLUDED.output_tokens,
    updated_at = now()
WHERE analyses.source_sequencer <= EXCLUDED.source_sequencer
RETURNING id
"""


def _store(user_id: str, item_id: str, analysis: dict[str, Any], provider: str, model: str,
           version: Version, usage: Usage) -> int:
    """Upsert the item's analysis. The usage is the call's that produced this analysis: a
    retry or replay replaces the row's figures with its own (a row is one call's tokens)."""
    import psycopg

    row = {
        "item_id": item_id, "user_id": user_id, "category": analysis["category"],
        "summary": analysis["summary"], "description": analysis["description"],
        "tags": analysis["tags"], "colors": analysis["colors"],
        "text_content": analysis.get("text_content"), "provider": provider, "model": model,
        "source_etag": version.etag, "source_sequencer": version.sequencer,
        "raw": json.dumps({"analysis": analysis, "prompt_version": vision.PROMPT_VERSION}),
        "correlation_id": version.correlation_id,
        "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
    }
    try:
        with db.transaction() as cur:
            cur.execute(_UPSERT, row)
            stored = cur.fetchone()
            if stored is None:  # a newer version's analysis is already there
                cur.execute("SELECT id FROM analyses WHERE user_id = %s AND item_id = %s",
                            (user_id, item_id))
                stored = cur.fetchone()
    except psycopg.errors.ForeignKeyViolation:
        raise TerminalError(f"item {user_id}/{item_id} does not exist",
                            hint="the image processor stores the item first") from None
    assert stored is not None
    return int(stored[0])


def _publish(settings: Settings, user_id: str, item_id: str, version: Version,
             analysis_id: int, category: str, provider: str, model: str) -> None:
    out = {"item_id": item_id, "user_id": user_id, "analysis_id": str(analysis_id),
           "category": category, "provider": provider, "model": model}
    if version.correlation_id:
        out["correlation_id"] = version.correlation_id
    aws.put_event(source=settings.analysis_complete_source,
                  detail_type=settings.analysis_complete_detail_type, detail=out,
                  bus=settings.event_bus)
    log.event(logger, "EventBridge event published", stage="published",
              detail_type=settings.analysis_complete_detail_type)
