"""Reading the events that trigger the functions, strictly.

A malformed event can never succeed, so it is a `TerminalError` (dead-letter queue, no retry).
Every field is bounded and free of control characters before anything is written, so a
deterministic database error (PostgreSQL text cannot hold NUL) can never turn into a retry loop,
and an event this pipeline publishes is small by construction: the bounds below add up to a few
kilobytes, far under EventBridge's 256 KB (`MAX_DETAIL_BYTES` is checked by a test).

An event's fields are claims, not facts: EventBridge does not authenticate a custom `source`.
The handlers check what they claim against the `items` row (see the analyzer and embedder).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from collections_core import text
from collections_core.errors import TerminalError

MAX_KEY_BYTES = 1024  # S3's own limit for an object key
MAX_USER_ID_CHARS = 128
MAX_ID_LENGTH = 512  # an item id (the file name, perhaps with its folders)
MAX_BUCKET_CHARS = 63  # S3's limit for a bucket name
MAX_CORRELATION_ID_CHARS = 128
MAX_SEQUENCER_CHARS = 64  # S3 sequencers are 16-20 hex digits today
MAX_NUMBER_ID_CHARS = 20  # an analysis id (bigint)
MAX_SHORT_FIELD_CHARS = 128  # content type, provider, model, category
# The largest detail either event can carry, by the bounds above (a key counted as 4 bytes
# per character of JSON escaping at worst); a test checks the real worst case stays below it.
MAX_DETAIL_BYTES = 16_384
_HEX = re.compile(r"[0-9A-Fa-f]+")
_CORRELATION_ID = re.compile(r"[A-Za-z0-9._:/+=@-]+")


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
            raw_key, raw_bucket = obj["key"], s3["bucket"]["name"]
            size, etag, version = obj.get("size"), obj.get("eTag"), obj.get("versionId")
            raw_sequencer = obj.get("sequencer") or ""
        except (KeyError, TypeError, AttributeError) as exc:
            raise TerminalError(f"malformed S3 event record: missing {exc}") from None
        if not isinstance(raw_key, str):
            raise TerminalError("malformed S3 event record: the key is not a string")
        try:
            decoded_key = unquote_plus(raw_key, errors="strict")
        except UnicodeDecodeError:
            raise TerminalError("the object key is not valid UTF-8") from None
        objects.append(S3Object(
            bucket=text.identifier(raw_bucket, what="the bucket name",
                                   max_chars=MAX_BUCKET_CHARS),
            # Keys in notifications are URL-encoded, spaces as '+'.
            key=text.identifier(decoded_key, what="the object key",
                                max_chars=MAX_KEY_BYTES, max_bytes=MAX_KEY_BYTES),
            size=_size(size),
            etag=text.identifier(etag, what="the ETag", max_chars=MAX_SHORT_FIELD_CHARS)
            if etag else None,
            sequencer=sequencer(raw_sequencer) if raw_sequencer else "",
            version_id=text.identifier(version, what="the version id",
                                       max_chars=MAX_SHORT_FIELD_CHARS) if version else None,
        ))
    return objects


def _size(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | str) or not str(value).isdigit():
        raise TerminalError("malformed S3 event record: the size is not a number")
    return int(value)


def sequencer(value: Any) -> str:
    """An S3 sequencer, checked: hexadecimal digits, bounded. Anything else is refused."""
    if not isinstance(value, str) or not value or len(value) > MAX_SEQUENCER_CHARS \
            or not _HEX.fullmatch(value):
        raise TerminalError("the sequencer is not an S3 sequencer (hexadecimal digits)")
    return value


def sequencer_key(value: str) -> str:
    """S3 sequencers are hexadecimal values of varying length: this form compares them as
    numbers compare (upper case, left-padded), and is what the `items` row stores."""
    return sequencer(value).upper().rjust(32, "0") if value else ""


def correlation_id(value: Any) -> str | None:
    """A correlation id from object metadata or an event: bounded, plain characters only."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > MAX_CORRELATION_ID_CHARS \
            or not _CORRELATION_ID.fullmatch(value):
        raise TerminalError(
            f"the correlation id is not an id (at most {MAX_CORRELATION_ID_CHARS} letters, "
            "digits and ._:/+=@-)", hint="set x-amz-meta-correlation-id to a short id")
    return value


def user_id(value: Any) -> str:
    return text.identifier(value, what="the user id", max_chars=MAX_USER_ID_CHARS)


def item_id(value: Any) -> str:
    return text.identifier(value, what="the item id", max_chars=MAX_ID_LENGTH)


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
    missing = [f for f in required if not isinstance(body.get(f), str | int)
               or isinstance(body.get(f), bool) or body.get(f) == ""]
    if missing:
        raise TerminalError(f"{detail_type} detail is missing {', '.join(missing)}")
    for name, value in body.items():
        _check_detail_field(detail_type, str(name), value)
    return body


_DETAIL_LIMITS = {
    "user_id": MAX_USER_ID_CHARS, "item_id": MAX_ID_LENGTH, "bucket": MAX_BUCKET_CHARS,
    "original_key": MAX_KEY_BYTES, "thumbnail_bucket": MAX_BUCKET_CHARS,
    "thumbnail_key": MAX_KEY_BYTES, "sequencer": MAX_SEQUENCER_CHARS,
    "correlation_id": MAX_CORRELATION_ID_CHARS, "analysis_id": MAX_NUMBER_ID_CHARS,
}


def _check_detail_field(detail_type: str, name: str, value: Any) -> None:
    """Bounded, control-free scalars only: what no handler can store is refused up front."""
    if value is None or value == "" or isinstance(value, bool | int | float):
        if isinstance(value, int | float) and len(str(value)) > MAX_NUMBER_ID_CHARS:
            raise TerminalError(f"{detail_type} detail field {name} is too long")
        return
    limit = _DETAIL_LIMITS.get(name, MAX_SHORT_FIELD_CHARS)
    if not isinstance(value, str):
        raise TerminalError(f"{detail_type} detail field {name} is not a string")
    text.identifier(value, what=f"{detail_type} detail field {name}", max_chars=limit,
                    max_bytes=MAX_KEY_BYTES)


def split_key(key: str) -> tuple[str, str]:
    """`user123/test-image.jpg` -> ("user123", "test-image.jpg"): the user and the name."""
    user, sep, rest = key.partition("/")
    if not sep or not user or not rest or rest.endswith("/"):
        raise TerminalError(f"key {key!r} is not <user_id>/<name>",
                            hint="upload to s3://<bucket>/<user_id>/<file>")
    return user_id(user), rest


def item_identity(key: str) -> tuple[str, str]:
    """`user123/test-image.jpg` -> ("user123", "test-image"); deeper paths keep their folders.
    This is the id an object gets when no other object of its user holds it already; see
    `item_candidates` for the rule when one does."""
    user, candidates = item_candidates(key)
    return user, candidates[0]


def item_candidates(key: str) -> tuple[str, list[str]]:
    """The ids an object may take, in order of preference.

    One object, one row: the first object of a user with a given stem gets the stem
    (`u/photo.jpg` -> `photo`, the guide's `test-image`); a second object with the same stem
    gets its whole name (`u/photo.png` -> `photo.png`), and in the rare case that is taken too
    (`u/photo.png.jpg` arrived first and holds `photo.png`) its whole name and a short hash of
    the key. Which one an object holds is recorded in its row, so a redelivery finds it again.
    """
    user, rest = split_key(key)
    stem, dot, _ext = rest.rpartition(".")
    first = stem if dot and stem and not stem.endswith("/") else rest
    digest = hashlib.sha256(key.encode()).hexdigest()[:8]
    item_id(first)
    candidates = [c for c in dict.fromkeys([first, rest, f"{rest}~{digest}"])
                  if len(c) <= MAX_ID_LENGTH]
    return user, candidates
