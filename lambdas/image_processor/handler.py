"""Image processor: S3 ObjectCreated -> thumbnail -> `items` row -> `ImageProcessed` event.

Thumbnails go to a bucket of their own, which has no notification, so a thumbnail can never
trigger this function. Each S3 record is handled on its own: one bad upload in a batch does not
hold back the others.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from collections_core import aws, db, events, images, log, runtime
from collections_core.config import Settings
from collections_core.errors import TerminalError

logger = log.get_logger("collections.processor")
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
    return sequencer.upper().rjust(32, "0") if sequencer else ""


def process_object(obj: events.S3Object, settings: Settings) -> dict[str, Any]:
    user_id, item_id = events.item_identity(obj.key)
    log.bind(item_id=item_id, user_id=user_id)
    sequencer = sequencer_key(obj.sequencer)
    if _is_stale(user_id, item_id, sequencer):
        log.event(logger, "skipped: a newer version of this object was already processed",
                  stage="thumbnail", outcome="stale")
        return {"key": obj.key, "status": "stale"}

    started = time.perf_counter()
    data, metadata, etag = _download(obj)
    correlation_id = metadata.get(CORRELATION_METADATA)
    log.bind(correlation_id=correlation_id)
    log.event(logger, "Image downloaded", stage="downloaded", bytes=len(data),
              duration_ms=_ms(started))

    started = time.perf_counter()
    thumb, source = images.render_small(data, settings.thumbnail_size)
    thumbnail_key = f"{user_id}/{item_id}.jpg"
    _put_thumbnail(settings.thumbnails_bucket, thumbnail_key, thumb.data, correlation_id)
    log.event(logger, "Thumbnail created", stage="thumbnail", width=thumb.width,
              height=thumb.height, thumbnail_key=thumbnail_key, duration_ms=_ms(started))

    row = {
        "id": item_id, "user_id": user_id, "bucket": obj.bucket, "original_key": obj.key,
        "thumbnail_bucket": settings.thumbnails_bucket, "thumbnail_key": thumbnail_key,
        "content_type": source.content_type, "width": source.width,
        "height": source.height, "size_bytes": len(data), "etag": etag, "sequencer": sequencer,
        "correlation_id": correlation_id,
    }
    if not _upsert_item(row):
        log.event(logger, "skipped: a newer version was stored meanwhile", outcome="stale")
        return {"key": obj.key, "status": "stale"}

    detail = {k: v for k, v in row.items() if k not in ("id", "etag")}
    detail["item_id"] = item_id
    detail["thumbnail_key"] = thumbnail_key
    aws.put_event(source=settings.image_processed_source,
                  detail_type=settings.image_processed_detail_type,
                  detail={k: v for k, v in detail.items() if v is not None},
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
    return data, metadata, response.get("ETag")


def _put_thumbnail(bucket: str, key: str, data: bytes, correlation_id: str | None) -> None:
    extra = {"Metadata": {CORRELATION_METADATA: correlation_id}} if correlation_id else {}
    try:
        aws.client("s3").put_object(Bucket=bucket, Key=key, Body=data,
                                    ContentType="image/jpeg", **extra)
    except Exception as exc:
        raise aws.classify(exc, f"writing thumbnail s3://{bucket}/{key}") from None


def _is_stale(user_id: str, item_id: str, sequencer: str) -> bool:
    if not sequencer:
        return False
    with db.transaction() as cur:
        cur.execute("SELECT sequencer FROM items WHERE user_id = %s AND id = %s",
                    (user_id, item_id))
        row = cur.fetchone()
    return bool(row and row[0] and row[0] > sequencer)


_UPSERT = """
INSERT INTO items (id, user_id, bucket, original_key, thumbnail_bucket, thumbnail_key,
                   content_type, width, height, size_bytes, etag, sequencer, correlation_id)
VALUES (%(id)s, %(user_id)s, %(bucket)s, %(original_key)s, %(thumbnail_bucket)s,
        %(thumbnail_key)s, %(content_type)s, %(width)s, %(height)s, %(size_bytes)s, %(etag)s,
        %(sequencer)s, %(correlation_id)s)
ON CONFLICT (user_id, id) DO UPDATE SET
    bucket = EXCLUDED.bucket, original_key = EXCLUDED.original_key,
    thumbnail_bucket = EXCLUDED.thumbnail_bucket, thumbnail_key = EXCLUDED.thumbnail_key,
    content_type = EXCLUDED.content_type, width = EXCLUDED.width, height = EXCLUDED.height,
    size_bytes = EXCLUDED.size_bytes, etag = EXCLUDED.etag, sequencer = EXCLUDED.sequencer,
    correlation_id = COALESCE(EXCLUDED.correlation_id, items.correlation_id),
    status = 'processed', updated_at = now()
WHERE items.sequencer <= EXCLUDED.sequencer
RETURNING id
"""


def _upsert_item(row: dict[str, Any]) -> bool:
    """Insert or update the item; False when a newer version is already stored."""
    with db.transaction() as cur:
        cur.execute(_UPSERT, row)
        return cur.fetchone() is not None
