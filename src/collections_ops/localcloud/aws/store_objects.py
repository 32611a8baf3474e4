"""S3 objects kept before S3 would answer, and announced once.

S3 answers a PUT only once it has kept the object, and announces only objects it has kept.
moto sets an object's metadata after `put_object` returns and announces in-process, so the
object is written to the store by a WSGI wrapper (`s3_middleware`), after moto accepted the
write and before the client hears of it, with the request's notifications held
(`store_messages.held_messages`) until the object is kept. A write that cannot be kept (a
full disk) is undone in the store and in moto and refused with a 503. One completed
multipart upload is one `ObjectCreated:CompleteMultipartUpload` (`install_notifications`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from collections_ops.localcloud.aws.store import ObjectChange, Store
from collections_ops.localcloud.aws.store_messages import HeldMessages, held_messages

log = logging.getLogger("collections.localcloud")
_completing = threading.local()  # set while this thread completes a multipart upload


def install_notifications() -> None:
    """One `ObjectCreated:CompleteMultipartUpload` per completed multipart upload, as S3
    sends: moto's completion stores the object with `put_object`, which announces an
    `ObjectCreated:Put` of its own, so the pipeline ran twice for every large upload."""
    from moto.s3.models import MultipartDict, S3Backend

    put_object = S3Backend.put_object
    complete = S3Backend.complete_multipart_upload
    forget_upload = MultipartDict.__delitem__

    def forget_upload_hook(self: Any, upload_id: str) -> None:
        if getattr(_completing, "active", False):
            # Its parts stay readable until the object is kept (`_Before.done`): a refused
            # completion puts the upload back, to be completed again.
            dict.__delitem__(self, upload_id)
            return
        forget_upload(self, upload_id)

    def put_object_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        if getattr(_completing, "active", False):
            kwargs["disable_notification"] = True  # the completion announces it, once
        return put_object(self, *args, **kwargs)

    def complete_hook(self: Any, *args: Any, **kwargs: Any) -> Any:
        _completing.active = True
        try:
            return complete(self, *args, **kwargs)
        finally:
            _completing.active = False

    S3Backend.put_object = put_object_hook  # type: ignore[method-assign]
    MultipartDict.__delitem__ = forget_upload_hook  # type: ignore[method-assign]
    S3Backend.complete_multipart_upload = complete_hook  # type: ignore[method-assign]


MAX_KEY_BYTES = 1024  # S3's limit for an object key, in bytes of UTF-8


def object_address(environ: dict[str, Any]) -> tuple[str, str]:
    """(bucket, key) of a path-style S3 request, decoded once from the path as it arrived,
    as moto decodes it. PATH_INFO is decoded already (and, under WSGI, as Latin-1): decoding
    it again turned `a%41` into `aA`, and a multibyte key into another string, so the store
    kept another key than S3 had, or none."""
    raw = str(environ.get("RAW_URI") or environ.get("REQUEST_URI") or "")
    if raw:
        parsed = urlsplit(raw)
        path = unquote(parsed.path if parsed.scheme else raw.split("?", 1)[0])
    else:
        path = str(environ.get("PATH_INFO", "")).encode("latin-1", "replace").decode(
            "utf-8", "replace")
    bucket, _, key = path.lstrip("/").partition("/")
    return bucket, key


def s3_middleware(app: Callable[..., Any], store: Store, buckets: set[str], *,
                  account: str) -> Callable[..., Any]:
    """Wrap moto's WSGI app: after a successful PUT/POST/DELETE of an object in one of
    `buckets` (path-style requests, as the local endpoint gets them), write the object from
    moto's backend to the store, then its notifications, before the answer leaves. Both are
    kept or neither is: an upload whose object or notification cannot be written is undone
    and refused with a 503, and nothing of it reaches a consumer."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("PUT", "POST", "DELETE"):
            return app(environ, start_response)
        bucket, key = object_address(environ)
        if bucket not in buckets:
            return app(environ, start_response)
        writes = bool(key) and method != "DELETE"
        if writes and len(key.encode("utf-8")) > MAX_KEY_BYTES:
            return _key_too_long(start_response, key)
        if writes and not store.has_room(_incoming_bytes(environ, bucket, account=account)):
            return _unavailable(start_response, "no space left on device")
        before = _Before.of(environ, bucket, key, account=account) if writes else None
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None  # moto's app returns its body; it never calls write()

        # The object first, then its notifications, then the answer.
        with held_messages() as held:
            body = b"".join(app(environ, capture))
        ok = captured.get("status", "500").startswith("2")
        if ok and before is not None:
            try:
                _keep(store, held, bucket, key, account=account)
            except OSError as exc:  # a full disk: undo, and say why
                log.error("could not keep s3://%s/%s: %s", bucket, key, exc)
                held.drop()
                before.put_back(store, account=account)
                return _unavailable(start_response, str(exc.strerror or exc))
            before.done()
        else:
            if ok and key:
                _sync_object(store, bucket, key, account=account)  # a DELETE
            elif ok and method == "POST" and "delete" in environ.get("QUERY_STRING", ""):
                _sync_bucket(store, bucket, account=account)  # DeleteObjects: reconcile
            held.keep(store)
        start_response(captured["status"], captured["headers"])
        return [body]

    return wrapped


def _keep(store: Store, held: HeldMessages, bucket: str, key: str, *, account: str) -> None:
    """The object, then its notifications, as one step: when the notifications cannot be
    written the object's write is taken back, and the error raised."""
    with store.lock:
        change = _sync_object(store, bucket, key, account=account)
        try:
            held.keep(store)
        except BaseException:
            if change is not None:
                change.undo()
            raise
    if change is not None:
        with contextlib.suppress(OSError):  # leftovers only: tidy_objects removes them
            change.commit()


def _incoming_bytes(environ: dict[str, Any], bucket_name: str, *, account: str) -> int:
    """What a write will store: the body, or for the completion of a multipart upload (whose
    own body is a short list of parts) the parts it puts together."""
    upload_id = parse_qs(environ.get("QUERY_STRING", "")).get("uploadId", [""])[0]
    if environ.get("REQUEST_METHOD") == "POST" and upload_id:
        with contextlib.suppress(Exception):
            upload = _bucket(bucket_name, account=account).multiparts[upload_id]
            return sum(int(part.size) for part in upload.parts.values())
    try:
        return int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return 0


class _Before:
    """What moto held for a key before a write, to put back if the write is refused."""

    def __init__(self, bucket: str, key: str, versions: list[Any], upload: tuple[str, Any]
                 | None) -> None:
        self.bucket, self.key, self.versions, self.upload = bucket, key, versions, upload

    @classmethod
    def of(cls, environ: dict[str, Any], bucket_name: str, key: str, *,
           account: str) -> _Before:
        bucket = _bucket(bucket_name, account=account)
        versions = list(bucket.keys.getlist(key, [])) if bucket is not None else []
        upload_id = parse_qs(environ.get("QUERY_STRING", "")).get("uploadId", [""])[0]
        completes = environ.get("REQUEST_METHOD") == "POST" and upload_id  # not a part
        upload = bucket.multiparts.get(upload_id) if bucket is not None and completes else None
        return cls(bucket_name, key, versions,
                   (upload_id, upload) if upload is not None else None)

    def done(self) -> None:
        """The write is kept: a completed upload's parts are read no more (what moto does
        when it completes one)."""
        if self.upload is not None:
            with contextlib.suppress(Exception):
                self.upload[1].dispose()

    def put_back(self, store: Store, *, account: str) -> None:
        """moto as it was: the versions it had (an unversioned bucket's replaced object is
        gone from moto's memory, so it comes back from the store, which kept it), and a
        completed multipart upload open again."""
        try:
            with store.lock:
                bucket = _bucket(self.bucket, account=account)
                alive = [v for v in self.versions if not getattr(v, "disposed", False)]
                for refused in bucket.keys.getlist(self.key, []):
                    if self.upload is not None and not any(refused is v for v in alive):
                        refused.multipart = None  # disposing it would close the parts
                if alive:
                    bucket.keys.setlist(self.key, alive)
                else:
                    if self.key in bucket.keys:
                        bucket.keys.pop(self.key)
                    kept = store.kept_object(self.bucket, self.key)
                    if kept is not None:
                        _put_in_moto(_s3(account), *kept)
                if self.upload is not None:
                    bucket.multiparts[self.upload[0]] = self.upload[1]
        except Exception as exc:
            log.warning("could not undo the write of s3://%s/%s: %s", self.bucket, self.key,
                        exc)


def _key_too_long(start_response: Callable[..., Any], key: str) -> list[bytes]:
    """S3's answer to a key over 1,024 bytes, before anything is written."""
    size = len(key.encode("utf-8"))
    error = ('<?xml version="1.0" encoding="UTF-8"?><Error><Code>KeyTooLongError</Code>'
             f"<Message>Your key is too long</Message><Size>{size}</Size>"
             f"<MaxSizeAllowed>{MAX_KEY_BYTES}</MaxSizeAllowed></Error>").encode()
    start_response("400 Bad Request", [("Content-Type", "application/xml"),
                                       ("Content-Length", str(len(error)))])
    return [error]


def _unavailable(start_response: Callable[..., Any], why: str) -> list[bytes]:
    message = (f"the local cloud refused the upload: it could not be stored ({why}); "
               "free disk space under the local cloud's state directory")
    error = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable'
             f"</Code><Message>{message}</Message></Error>").encode()
    start_response("503 Service Unavailable", [("Content-Type", "application/xml"),
                                               ("Content-Length", str(len(error)))])
    return [error]


def _s3(account: str) -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[account]["global"]


def _bucket(name: str, *, account: str) -> Any:
    return _s3(account).buckets.get(name)


def _record_of(current: Any, *, versioned: bool) -> dict[str, Any]:
    """What S3 shows of an object besides its body, kept so a restart changes none of it
    (`reconcile --min-age` reads LastModified; clients compare ETags)."""
    return {"metadata": dict(current.metadata), "etag": current.etag.strip('"'),
            "last_modified": current.last_modified.isoformat(),
            "version_id": current.version_id if versioned else None}


def _sync_object(store: Store, bucket_name: str, key: str, *,
                 account: str) -> ObjectChange | None:
    """Make the store hold what moto holds for `key`; the change, if there was one."""
    with store.lock:
        bucket = _bucket(bucket_name, account=account)
        current = bucket.keys.get(key) if bucket is not None else None
        if current is None or getattr(current, "is_delete_marker", False) \
                or not hasattr(current, "value"):
            store.delete_object(bucket_name, key)
            return None
        record = _record_of(current, versioned=bool(bucket.is_versioned))
        kept = store.object_record(bucket_name, key)
        if kept is not None and all(kept.get(k) == v for k, v in record.items()):
            return None  # unchanged (an uploaded part, an ACL): the body is not written again
        return store.put_object(bucket_name, key, current.value, record)


def _sync_bucket(store: Store, bucket_name: str, *, account: str) -> None:
    with store.lock:
        bucket = _bucket(bucket_name, account=account)
        live = set(bucket.keys.keys()) if bucket is not None else set()
        for record, _ in list(store.objects()):
            if record.get("bucket") == bucket_name and record["key"] not in live:
                store.delete_object(bucket_name, record["key"])


def _put_in_moto(s3: Any, record: dict[str, Any], body: Path) -> None:
    """An object back in moto as it was kept: body, metadata, ETag, LastModified, version
    id; no notification (it was sent once)."""
    import datetime as dt

    restored = s3.put_object(record["bucket"], record["key"], body.read_bytes(),
                             etag=record.get("etag") or None, disable_notification=True)
    restored.set_metadata(dict(record.get("metadata") or {}))
    if isinstance(record.get("last_modified"), str):  # a record of an earlier version has none
        with contextlib.suppress(ValueError):
            restored.last_modified = dt.datetime.fromisoformat(record["last_modified"])
    if record.get("version_id"):
        restored._version_id = record["version_id"]


def restore(store: Store, *, account: str) -> int:
    """Put the kept objects back into a freshly provisioned moto, in buckets it has, after
    tidying what a crash left mid-write. Returns how many."""
    from moto.s3.models import s3_backends

    restored = 0
    s3 = s3_backends[account]["global"]
    store.tidy_objects()
    for record, body in store.objects():
        if record.get("bucket") not in s3.buckets:
            continue
        _put_in_moto(s3, record, body)
        restored += 1
    return restored
