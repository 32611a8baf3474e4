"""Reading the events that trigger the functions, strictly.

A malformed event can never succeed, so it is a `TerminalError` (dead-letter queue, no retry).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from collections_core.errors import TerminalError

MAX_ID_LENGTH = 512


@dataclass(frozen=True)
class S3Object:
    bucket: str
    key: str  # decoded
    size: int | None
    etag: str | None
    sequencer: str
    version_id: str | None


def s3_records(event: Any) -> list[S3Object]:
    """Objects created in an S3 notification; `s3:TestEvent` and record-less events give []."""
    if not isinstance(event, dict):
        raise TerminalError("the S3 event is not a JSON object")
    if event.get("Event") == "s3:TestEvent":
        return []
    records = event.get("Records")
    if records is None:
        return []
    if not isinstance(records, list):
        raise TerminalError("the S3 event's Records is not a list")
    objects = []
    for record in records:
        try:
            if not str(record.get("eventName", "ObjectCreated:")).startswith("ObjectCreated:"):
                continue
            s3 = record["s3"]
            obj = s3["object"]
            objects.append(S3Object(
                bucket=str(s3["bucket"]["name"]),
                # Keys in notifications are URL-encoded, spaces as '+'.
                key=unquote_plus(str(obj["key"])),
                size=int(obj["size"]) if obj.get("size") is not None else None,
                etag=obj.get("eTag"),
                sequencer=str(obj.get("sequencer") or ""),
                version_id=obj.get("versionId"),
            ))
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise TerminalError(f"malformed S3 event record: missing {exc}") from None
    return objects


def detail(event: Any, *, source: str, detail_type: str,
           required: tuple[str, ...]) -> dict[str, Any]:
    """The `detail` of an EventBridge event, checked for source, type and required fields."""
    if not isinstance(event, dict):
        raise TerminalError("the event is not a JSON object")
    if event.get("source") != source or event.get("detail-type") != detail_type:
        raise TerminalError(
            f"unexpected event {event.get('source')!r}/{event.get('detail-type')!r}; "
            f"this function handles {source}/{detail_type}"
        )
    body = event.get("detail")
    if isinstance(body, str):  # tolerate a detail passed as a JSON string
        try:
            body = json.loads(body)
        except json.JSONDecodeError:
            raise TerminalError("the event detail is not valid JSON") from None
    if not isinstance(body, dict):
        raise TerminalError("the event detail is not a JSON object")
    missing = [f for f in required if not isinstance(body.get(f), str | int) or body.get(f) == ""]
    if missing:
        raise TerminalError(f"{detail_type} detail is missing {', '.join(missing)}")
    for f in required:
        if len(str(body[f])) > MAX_ID_LENGTH:
            raise TerminalError(f"{detail_type} detail field {f} is too long")
    return body


def item_identity(key: str) -> tuple[str, str]:
    """`user123/test-image.jpg` -> ("user123", "test-image"); deeper paths keep their folders."""
    user_id, sep, rest = key.partition("/")
    if not sep or not user_id or not rest or rest.endswith("/"):
        raise TerminalError(f"key {key!r} is not <user_id>/<name>",
                            hint="upload to s3://<bucket>/<user_id>/<file>")
    stem, dot, _ext = rest.rpartition(".")
    item_id = stem if dot and stem and not stem.endswith("/") else rest
    if len(item_id) > MAX_ID_LENGTH or len(user_id) > MAX_ID_LENGTH:
        raise TerminalError("key is too long")
    return user_id, item_id
