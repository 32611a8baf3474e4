"""Image processor: S3 ObjectCreated -> thumbnail -> `items` row -> `ImageProcessed` event.

Thumbnails go to a bucket of their own, which has no notification, so a thumbnail can never
trigger this function. Each S3 record is handled on its own: one bad upload in a batch does not
hold back the others.

Order of work, so that a failure leaves nothing behind: everything that can be refused (the
bucket, the key, the sequencer, the correlation id, the image itself) is checked and the
thumbnail rendered in memory before any write; then the row is stored, which also decides the
item's id (one object, one row: see `events.item_candidates`); only then is the thumbnail put,
under the id the row holds. A stale version writes neither row nor thumbnail.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from collections_core import aws, db, events, images, log, runtime, text
from collections_core.config import Settings
from collections_core.errors import RetryableError, TerminalError

logger = log.get_logger("collections.processor")
# Imported at init, before the first request (and inside a SnapStart snapshot).
runtime.preload("PIL.Image", "psycopg", "pgvector.psycopg")
FUNCTION_KEY = "processor"
CORRELATION_METADATA = "correlation-id"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return runtime.invoke(FUNCTION_KEY, event, context, _process_event)


def _process_event(event: Any, context: Any) -> dict[str, Any]:
    settings = Settings.from_environ()
    objects = events.s3_records(event)
    log.event(logger, "S3 event received", stage="received", records=len(objects))
    results = []
    for obj in objects:
        if obj.bucket == settings.thumbnails_bucket:
            log.event(logger, "ignored an object in the thumbnails bucket", key=obj.key)
            continue
        if len(objects) == 1:
            results.append(process_object(obj, settings))
            continue
        try:
            results.append(process_object(obj, settings))
        except TerminalError as exc:
            log.event(logger, f"failed: {exc.reason}", logging.ERROR, outcome="failed",
                      retryable=False, reason=exc.reason, key=obj.key)
            runtime.dead_letter(FUNCTION_KEY, {"Records": [_record_of(event, obj)]}, exc, context)
            results.append({"key": obj.key, "status": "failed", "reason": exc.reason})
    return {"status": "ok", "results": results}


def _record_of(event: dict[str, Any], obj: events.S3Object) -> Any:
    for record in event.get("Records", []):
        if events.s3_records({"Records": [record]}) == [obj]:
            return record
    return {}


def sequencer_key(sequencer: str) -> str:
    """S3 sequencers are hexadecimal values of varying length: compare them numerically."""
    return events.sequencer_key(sequencer)


def check_key(key: str) -> None:
    """Refuse a key with an empty, `.` or `..` segment: S3 keeps `u/../x.jpg` and `u//x.jpg`
    as they are, but any code that reads the key as a path (a thumbnail key, a folder, a
    share link) would leave the user's folder or collapse two keys into one, so the object
    is bad input, refused before any work."""
    segments = key.split("/")
    if any(s in ("", ".", "..") for s in segments):
        raise TerminalError(f"key {key!r} has an empty user or folder, or a '.' or '..' segment",
                            hint="upload to s3://<bucket>/<user_id>/<file> without empty, "
                                 ". or .. folders")


def thumbnail_key_for(user_id: str, item_id: str) -> str:
    return f"{user_id}/{item_id}.jpg"


def process_object(obj: events.S3Object, settings: Settings) -> dict[str, Any]:
    if obj.bucket != settings.images_bucket:
        raise TerminalError(f"s3://{obj.bucket}/{obj.key} is not in this environment's images "
                            f"bucket ({settings.images_bucket})")
    check_key(obj.key)
    user_id, candidates = events.item_candidates(obj.key)
    log.bind(user_id=user_id, key=obj.key)
    sequencer = sequencer_key(obj.sequencer)
    known = _known(user_id, obj.key)
    if known is not None and sequencer and known[1] > sequencer:
        log.bind(item_id=known[0])
        log.event(logger, "skipped: a newer version of this object was already processed",
                  stage="thumbnail", outcome="stale")
        return {"key": obj.key, "status": "stale"}

    started = time.perf_counter()
    data, metadata, etag = _download(obj)
    correlation_id = events.correlation_id(metadata.get(CORRELATION_METADATA))
    log.bind(correlation_id=correlation_id)
    log.event(logger, "Image downloaded", stage="downloaded", bytes=len(data),
              duration_ms=_ms(started))

    started = time.perf_counter()
    thumb, source = images.render_small(data, settings.thumbnail_size)
    row: dict[str, Any] = {
        "user_id": user_id, "bucket": obj.bucket, "original_key": obj.key,
        "thumbnail_bucket": settings.thumbnails_bucket,
        "content_type": source.content_type, "width": source.width,
        "height": source.height, "size_bytes": len(data), "etag": etag, "sequencer": sequencer,
        "correlation_id": correlation_id,
    }
    item_id = _claim(row, [known[0]] if known else candidates)
    if item_id is None:
        log.event(logger, "skipped: a newer version was stored meanwhile", outcome="stale")
        return {"key": obj.key, "status": "stale"}
    log.bind(item_id=item_id)
    thumbnail_key = thumbnail_key_for(user_id, item_id)
    _put_thumbnail(settings.thumbnails_bucket, thumbnail_key, thumb.data, correlation_id)
    log.event(logger, "Thumbnail created", stage="thumbnail", width=thumb.width,
              height=thumb.height, thumbnail_key=thumbnail_key, duration_ms=_ms(started))

    detail = {k: v for k, v in row.items() if k not in ("id", "etag")}
    detail["item_id"] = item_id
    aws.put_event(source=settings.image_processed_source,
                  detail_type=settings.image_processed_detail_type,
                  detail={k: v for k, v in detail.items() if v not in (None, "")},
                  bus=settings.event_bus)
    log.event(logger, "EventBridge event published", stage="published",
              detail_type=settings.image_processed_detail_type)
    return {"key": obj.key, "status": "processed", "item_id": item_id, "user_id": user_id}


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


def _download(obj: events.S3Object) -> tuple[bytes, dict[str, str], str | None]:
    s3 = aws.client("s3")
    what = f"reading s3://{obj.bucket}/{obj.key}"
    try:
        response = s3.get_object(Bucket=obj.bucket, Key=obj.key)
    except Exception as exc:
        if aws.error_code(exc) in ("NoSuchKey", "404", "NotFound"):
            raise TerminalError(f"s3://{obj.bucket}/{obj.key} no longer exists",
                                hint="it was deleted before it could be processed") from None
        raise aws.classify(exc, what) from None
    length = int(response.get("ContentLength") or 0)
    if length > images.MAX_BYTES:
        response["Body"].close()
        raise TerminalError(f"the object is {length} bytes; the limit is {images.MAX_BYTES}")
    data = response["Body"].read(images.MAX_BYTES + 1)
    metadata = {k.lower(): v for k, v in (response.get("Metadata") or {}).items()}
    etag = response.get("ETag")
    if etag is not None:
        etag = text.identifier(etag, what="the ETag", max_chars=events.MAX_SHORT_FIELD_CHARS)
    return data, metadata, etag


def _put_thumbnail(bucket: str, key: str, data: bytes, correlation_id: str | None) -> None:
    extra = {"Metadata": {CORRELATION_METADATA: correlation_id}} if correlation_id else {}
    try:
        aws.client("s3").put_object(Bucket=bucket, Key=key, Body=data,
                                    ContentType="image/jpeg", **extra)
    except Exception as exc:
        raise aws.classify(exc, f"writing thumbnail s3://{bucket}/{key}") from None


def _known(user_id: str, original_key: str) -> tuple[str, str] | None:
    """The id and stored sequencer of the row this object already has, if any."""
    with db.transaction() as cur:
        cur.execute("SELECT id, sequencer FROM items WHERE user_id = %s AND original_key = %s",
                    (user_id, original_key))
        row = cur.fetchone()
    return (str(row[0]), str(row[1] or "")) if row else None


_UPSERT = """
INSERT INTO items (id, user_id, bucket, original_key, thumbnail_bucket, thumbnail_key,
                   content_type, width, height, size_bytes, etag, sequencer, correlation_id)
VALUES (%(id)s, %(user_id)s, %(bucket)s, %(original_key)s, %(thumbnail_bucket)s,
        %(thumbnail_key)s, %(content_type)s, %(width)s, %(height)s, %(size_bytes)s, %(etag)s,
        %(sequencer)s, %(correlation_id)s)
ON CONFLICT (user_id, id) DO UPDATE SET
    bucket = EXCLUDED.bucket,
    thumbnail_bucket = EXCLUDED.thumbnail_bucket, thumbnail_key = EXCLUDED.thumbnail_key,
    content_type = EXCLUDED.content_type, width = EXCLUDED.width, height = EXCLUDED.height,
    size_bytes = EXCLUDED.size_bytes, etag = EXCLUDED.etag, sequencer = EXCLUDED.sequencer,
    correlation_id = COALESCE(EXCLUDED.correlation_id, items.correlation_id),
    status = 'processed', updated_at = now()
WHERE items.original_key = EXCLUDED.original_key AND items.sequencer <= EXCLUDED.sequencer
RETURNING id
"""


def _claim(row: dict[str, Any], candidates: list[str]) -> str | None:
    """Store the row under the first id no other object holds; return that id, or None when a
    newer version of this object is stored already. `row` gains its id and thumbnail key."""
    import psycopg

    for item_id in candidates:
        row.update(id=item_id, thumbnail_key=thumbnail_key_for(row["user_id"], item_id))
        try:
            with db.transaction() as cur:
                cur.execute(_UPSERT, row)
                if cur.fetchone() is not None:
                    return item_id
                cur.execute("SELECT original_key FROM items WHERE user_id = %s AND id = %s",
                            (row["user_id"], item_id))
                holder = cur.fetchone()
        except psycopg.errors.UniqueViolation:
            # Another delivery of this very object stored it meanwhile, under another id.
            raise RetryableError("this object was stored concurrently; trying again") from None
        if holder is not None and holder[0] == row["original_key"]:
            return None  # this object's own row, with a newer sequencer
        log.event(logger, f"id {item_id!r} belongs to another object of this user",
                  outcome="collision", item_id=item_id)
    raise TerminalError(f"no free item id for {row['original_key']!r}",
                        hint="rename the object")
