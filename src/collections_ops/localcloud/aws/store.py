"""The local cloud's durable data: what AWS would keep across a crash, kept under the state dir.

moto keeps everything in memory, so a `kill -9` of its process loses every object, queued
message and parameter. moto 5 offers one way to get state back, its recorder
(`/moto-api/recorder/…`): it logs every request and replays the log on demand. Replay does not
fit a queue consumer: every `ReceiveMessage` hands out fresh receipt handles, so replayed
`DeleteMessage` calls no longer match and every message ever delivered comes back; the log
also grows without bound and start-up time grows with it. There is no snapshot/restore API.

So the resources (buckets, queues, rules, functions, roles) are re-created from the pipeline
definition at every start, and only the *data* is kept, write-through, in plain files:

- S3 objects (body, metadata, ETag, LastModified, version id) under the key exactly as S3
  has it (read from the path as it arrived, decoded once), written after moto accepted a PUT
  and before the client gets its answer (a WSGI wrapper, because moto sets metadata after
  `put_object` returns). A key over S3's 1,024 bytes is refused as S3 refuses it;
- SQS messages, one file per message, written in `send_message` (so S3 notifications and
  EventBridge deliveries, which moto makes in-process, are kept too) and removed when the
  message is deleted or purged. An upload's notifications reach their queue only after its
  object and then they are written: a notification of an object not kept would be
  dead-lettered as missing (S3 never announces an object it has not kept), and one seen
  before it is kept would be processed although the upload may still be refused. One
  completed multipart upload is one `ObjectCreated:CompleteMultipartUpload`, as on S3;
- SSM parameters, and CloudWatch Logs events (appended, one JSON line per `PutLogEvents`).

An acknowledged write is therefore on disk before the client hears "OK": it survives a
`kill -9` of moto's process or of the whole local cloud (files reach the page cache before the
answer; they are not fsync'd, so an OS crash or power loss may lose the last writes). What is
not kept: in-flight visibility (after a restart every message is visible again, as after a
visibility timeout: at-least-once, as SQS promises), receive counts, old S3 versions of the
versioned bucket (the newest is kept), log events older than CloudWatch's 14-day window.

A full disk refuses uploads: a PUT that would leave less than twice its size plus 4 MB free is
answered with a 503 naming the cause, before moto sees it; an object or notification that
cannot be written anyway is undone (object, notification, and in moto the version it
replaced) and answered the same way. Uploads are refused rather than accepted and lost, or
accepted and never processed, and the rest of the local cloud keeps running.

Everything here is its owner's only (folders 0700, files 0600): it holds every photo.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import stat
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from collections_ops.localcloud.state import private_dir

log = logging.getLogger("collections.localcloud")
FREE_MARGIN_BYTES = 4 * 1024 * 1024


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _write_new(path: Path, data: bytes) -> None:
    """A file that did not exist, 0600 from its first byte (never readable by others, even
    for the moment between creating it and a chmod)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        _write_new(tmp, data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _keep_aside(meta: Path) -> Path:
    """A copy of `meta` to take a write back to: a hard link (no data to write, so it works
    on a full disk), or where links are not supported a copy."""
    backup = meta.with_name(f".{meta.name}.{uuid.uuid4().hex[:8]}.undo")
    try:
        os.link(meta, backup)
    except OSError:
        try:
            _write_new(backup, meta.read_bytes())
        except BaseException:
            backup.unlink(missing_ok=True)
            raise
    return backup


def _make_private(root: Path) -> None:
    """Folders 0700 and files 0600 under `root`: a store written by an earlier version has
    0755 folders and 0644 files."""
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            with contextlib.suppress(OSError):
                (Path(folder) / name).chmod(0o700)
        for name in files:
            path = Path(folder) / name
            with contextlib.suppress(OSError):
                if stat.S_IMODE(path.lstat().st_mode) & 0o077 and not path.is_symlink():
                    path.chmod(0o600)


class ObjectChange:
    """An object written to the store that can still be taken back: until `commit`, the
    previous record (a hard link, so taking it back needs no free space) and body stay on
    disk; `undo` puts them back, as if the write had never happened."""

    def __init__(self, meta: Path, backup: Path | None, body: Path, old_body: Path | None) -> None:
        self.meta, self.backup, self.body, self.old_body = meta, backup, body, old_body

    def commit(self) -> None:
        if self.backup is not None:
            self.backup.unlink(missing_ok=True)
        if self.old_body is not None and self.old_body != self.body:
            self.old_body.unlink(missing_ok=True)

    def undo(self) -> None:
        if self.backup is not None:
            os.replace(self.backup, self.meta)
        else:
            self.meta.unlink(missing_ok=True)
        if self.body != self.old_body:
            self.body.unlink(missing_ok=True)


class Store:
    """Files under `<state dir>/store`; every method is safe to call from any thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        # Off while resources are provisioned: what provisioning writes (S3's test event, log
        # streams) is made again at every start, and must not be restored on top of that.
        self.recording = True
        private_dir(root)
        for sub in ("s3", "sqs", "ssm", "logs"):
            private_dir(root / sub)
        _make_private(root)

    def has_room(self, incoming: int) -> bool:
        """Room for an object of `incoming` bytes and what it sets off (its notification, the
        handlers' messages, log lines, the thumbnail): refuse early rather than half-store."""
        try:
            stat = os.statvfs(self.root)
        except OSError:
            return True
        return stat.f_bavail * stat.f_frsize >= 2 * incoming + FREE_MARGIN_BYTES

    # ----------------------------------------------------------------- S3

    def _object_meta(self, bucket: str, key: str) -> Path:
        return self.root / "s3" / _digest(bucket) / f"{_digest(key)}.json"

    @staticmethod
    def _read_record(meta: Path) -> dict[str, Any] | None:
        try:
            record = json.loads(meta.read_text())
        except (OSError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    @staticmethod
    def _body_of(meta: Path, record: dict[str, Any]) -> Path:
        # A record names its body file; records written before bodies had names of their
        # own use the record's name.
        return meta.with_name(str(record.get("body") or meta.with_suffix(".bin").name))

    def object_record(self, bucket: str, key: str) -> dict[str, Any] | None:
        """What the store holds for an object (bucket, key, metadata, etag, last_modified,
        version_id), without its body; None when it holds nothing."""
        return self._read_record(self._object_meta(bucket, key))

    def put_object(self, bucket: str, key: str, body: bytes,
                   record: dict[str, Any]) -> ObjectChange:
        """Keep `body` and `record` (metadata, etag, last_modified, version_id) for the
        object, replacing what was kept; the caller commits or undoes the change.

        The body goes to a file of its own name, then the record naming it replaces the old
        record in one rename: a crash at any point leaves the old object or the new one
        whole, never a new body under the old record."""
        meta = self._object_meta(bucket, key)
        private_dir(meta.parent)
        old = self._read_record(meta)
        old_body = self._body_of(meta, old) if old is not None else None
        new_body = meta.with_name(f"{meta.stem}.{uuid.uuid4().hex[:12]}.bin")
        backup: Path | None = None
        try:
            _write_new(new_body, body)
            if old is not None:
                backup = _keep_aside(meta)
            _write_atomic(meta, json.dumps({**record, "bucket": bucket, "key": key,
                                            "body": new_body.name}).encode())
        except BaseException:
            new_body.unlink(missing_ok=True)
            if backup is not None:
                backup.unlink(missing_ok=True)
            raise
        return ObjectChange(meta, backup, new_body, old_body)

    def kept_object(self, bucket: str, key: str) -> tuple[dict[str, Any], Path] | None:
        """(record, body file) of one object, or None."""
        meta = self._object_meta(bucket, key)
        record = self._read_record(meta)
        if record is None or not self._body_of(meta, record).exists():
            return None
        return record, self._body_of(meta, record)

    def delete_object(self, bucket: str, key: str) -> None:
        meta = self._object_meta(bucket, key)
        record = self._read_record(meta)
        meta.unlink(missing_ok=True)
        if record is not None:
            self._body_of(meta, record).unlink(missing_ok=True)

    def objects(self) -> Iterable[tuple[dict[str, Any], Path]]:
        """(record, body file) of every object kept."""
        for meta in sorted((self.root / "s3").glob("*/*.json")):
            record = self._read_record(meta)
            if record is None or not isinstance(record.get("key"), str):
                continue
            body = self._body_of(meta, record)
            if body.exists():
                yield record, body

    def tidy_objects(self) -> int:
        """Remove what a crash in the middle of a write left (bodies no record names, taken
        back records, temporary files); call before the store is used. Returns how many."""
        removed = 0
        for folder in (self.root / "s3").glob("*"):
            named = {str(r.get("body") or m.with_suffix(".bin").name)
                     for m in folder.glob("*.json") if (r := self._read_record(m)) is not None}
            for path in folder.iterdir():
                leftover = path.suffix in (".undo", ".tmp") or (
                    path.suffix == ".bin" and path.name not in named)
                if leftover:
                    path.unlink(missing_ok=True)
                    removed += 1
        return removed

    # ----------------------------------------------------------------- SQS

    def _message_path(self, queue: str, message_id: str) -> Path:
        return self.root / "sqs" / queue / f"{message_id}.json"

    def put_message(self, queue: str, message_id: str, record: dict[str, Any]) -> None:
        path = self._message_path(queue, message_id)
        private_dir(path.parent)
        _write_atomic(path, json.dumps(record).encode())

    def delete_message(self, queue: str, message_id: str) -> None:
        self._message_path(queue, message_id).unlink(missing_ok=True)

    def purge_queue(self, queue: str) -> None:
        for path in (self.root / "sqs" / queue).glob("*.json"):
            path.unlink(missing_ok=True)

    def messages(self) -> Iterable[tuple[str, str, dict[str, Any]]]:
        files = [(p.stat().st_mtime_ns, p) for p in (self.root / "sqs").glob("*/*.json")]
        for _, path in sorted(files):  # oldest first, roughly the order they were sent
            try:
                yield path.parent.name, path.stem, json.loads(path.read_text())
            except (OSError, ValueError):
                continue

    # ----------------------------------------------------------------- SSM

    def _sealing_key(self) -> bytes:
        """The key SecureString values are encrypted with at rest (AWS keeps them under KMS):
        32 random bytes in a 0600 file of the store, made on first use."""
        path = self.root / "ssm.key"
        with self.lock:
            try:
                return path.read_bytes()
            except FileNotFoundError:
                key = os.urandom(32)
                _write_new(path, key)
                return key

    def _seal(self, name: str, value: str) -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = os.urandom(12)
        sealed = AESGCM(self._sealing_key()).encrypt(nonce, value.encode(), name.encode())
        return base64.b64encode(nonce + sealed).decode()

    def _unseal(self, name: str, sealed: str) -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        raw = base64.b64decode(sealed)
        return AESGCM(self._sealing_key()).decrypt(raw[:12], raw[12:], name.encode()).decode()

    def put_parameter(self, name: str, record: dict[str, Any]) -> None:
        if record.get("type") == "SecureString":
            # Never the plain value on disk: state folders get copied, attached to bug reports.
            record = {**record, "value": None, "sealed": self._seal(name, record["value"])}
        _write_atomic(self.root / "ssm" / f"{_digest(name)}.json", json.dumps(record).encode())

    def delete_parameter(self, name: str) -> None:
        (self.root / "ssm" / f"{_digest(name)}.json").unlink(missing_ok=True)

    def parameters(self) -> Iterable[dict[str, Any]]:
        for path in sorted((self.root / "ssm").glob("*.json")):
            try:
                record = json.loads(path.read_text())
                if record.get("sealed"):
                    record["value"] = self._unseal(record["name"], record.pop("sealed"))
            except Exception as exc:  # unreadable, torn, or sealed with a lost key
                log.warning("parameter record %s not restored: %s", path.name, type(exc).__name__)
                continue
            yield record

    # ----------------------------------------------------------------- Logs

    def append_log(self, group: str, stream: str, events: list[dict[str, Any]]) -> None:
        line = json.dumps({"g": group, "s": stream, "e": events}) + "\n"
        # One write() of the whole line: a crash leaves at most a torn last line, skipped.
        fd = os.open(self.root / "logs" / f"{_digest(group)}.jsonl",
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        with os.fdopen(fd, "a") as fh:
            fh.write(line)

    def log_batches(self) -> Iterable[tuple[str, str, list[dict[str, Any]]]]:
        for path in sorted((self.root / "logs").glob("*.jsonl")):
            with open(path) as fh:
                for line in fh:
                    try:
                        record = json.loads(line)
                    except ValueError:
                        continue
                    yield record["g"], record["s"], record["e"]


# --------------------------------------------------------------------- moto hooks


_active: Store | None = None
_held = threading.local()  # this thread's messages waiting for their object (held_messages)


class HeldMessages:
    """The messages one request sent while its object was not yet kept: in no queue yet
    (no consumer can see them), and on no disk."""

    def __init__(self) -> None:
        self.records: list[tuple[str, Any, dict[str, Any]]] = []  # what keep writes
        self.deferred: list[tuple[Any, Any]] = []  # (queue, message) keep adds to moto

    def keep(self, store: Store) -> None:
        """The object is kept: write the messages, then queue them. If one cannot be
        written, none is kept or queued, and the error is raised (the upload is refused)."""
        with store.lock:
            written: list[tuple[str, str]] = []
            try:
                for queue_name, message, record in self.records:
                    store.put_message(queue_name, message.id, record)
                    written.append((queue_name, message.id))
            except BaseException:
                for queue_name, message_id in written:
                    with contextlib.suppress(OSError):
                        store.delete_message(queue_name, message_id)
                raise
            add = _originals["add_message"]
            for queue, message in self.deferred:
                add(queue, message)
            self.records, self.deferred = [], []

    def drop(self) -> None:
        """The object was not kept (the upload is refused): its messages go too."""
        self.records, self.deferred = [], []


@contextlib.contextmanager
def held_messages() -> Iterator[HeldMessages]:
    """Messages sent by this thread inside the block reach their queues (and the store)
    only through `keep`, after the object they announce is kept; `drop` forgets them."""
    held = HeldMessages()
    _held.current = held
    try:
        yield held
    finally:
        _held.current = None


def install(store: Store) -> None:
    """Make moto's S3, SQS, SSM and Logs backends write through to `store`. Call once, in
    the emulator's process, before it serves requests."""
    global _active
    from moto.sqs.models import Queue, SQSBackend

    if _active is not None:
        _active = store
        return
    _active = store

    send = SQSBackend.send_message

    def send_message(self: Any, queue_name: str, message_body: str,
                     *args: Any, **kwargs: Any) -> Any:
        with store.lock:  # a delete cannot slip between moto's add and the file
            message = send(self, queue_name, message_body, *args, **kwargs)
            if store.recording:
                record = {"body": message.body, "attributes": message.message_attributes,
                          "group_id": message.group_id,
                          "deduplication_id": message.deduplication_id, "sent": time.time()}
                held: HeldMessages | None = getattr(_held, "current", None)
                if held is not None:
                    held.records.append((queue_name, message, record))
                else:
                    store.put_message(queue_name, message.id, record)
        return message

    add_message = Queue.add_message

    def add_message_hook(self: Any, message: Any) -> None:
        held: HeldMessages | None = getattr(_held, "current", None)
        if held is not None:
            held.deferred.append((self, message))
            return
        add_message(self, message)

    queue_delete = Queue.delete_message

    def delete_message(self: Any, receipt_handle: str) -> None:
        with store.lock:
            ids = [m.id for m in self._messages if m.had_receipt_handle(receipt_handle)]
            queue_delete(self, receipt_handle)
            for message_id in ids:
                store.delete_message(self.name, message_id)

    purge = SQSBackend.purge_queue

    def purge_queue(self: Any, queue_name: str) -> None:
        with store.lock:
            purge(self, queue_name)
            store.purge_queue(queue_name)

    SQSBackend.send_message = send_message  # type: ignore[method-assign]
    Queue.add_message = add_message_hook  # type: ignore[method-assign]
    Queue.delete_message = delete_message  # type: ignore[method-assign]
    SQSBackend.purge_queue = purge_queue  # type: ignore[method-assign]
    _originals.update(send_message=send, add_message=add_message)
    _install_s3_notifications()
    _install_ssm_and_logs(store)


_completing = threading.local()  # set while this thread completes a multipart upload


def _install_s3_notifications() -> None:
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


def _install_ssm_and_logs(store: Store) -> None:
    from moto.logs.models import LogsBackend
    from moto.ssm.models import SimpleSystemManagerBackend

    put_parameter = SimpleSystemManagerBackend.put_parameter

    def put_parameter_hook(self: Any, name: str, description: str, value: str,
                           parameter_type: str, *args: Any, **kwargs: Any) -> Any:
        result = put_parameter(self, name, description, value, parameter_type, *args, **kwargs)
        if store.recording:
            store.put_parameter(name, {"name": name, "description": description,
                                       "value": value, "type": parameter_type})
        return result

    delete_parameter = SimpleSystemManagerBackend.delete_parameter

    def delete_parameter_hook(self: Any, name: str) -> None:
        delete_parameter(self, name)
        store.delete_parameter(name)

    delete_parameters = SimpleSystemManagerBackend.delete_parameters

    def delete_parameters_hook(self: Any, names: list[str]) -> list[str]:
        # moto answers the names it deleted (DeletedParameters); the rest did not exist
        deleted = delete_parameters(self, names)
        for name in deleted:
            store.delete_parameter(name)
        return deleted

    put_log_events = LogsBackend.put_log_events

    def put_log_events_hook(self: Any, log_group_name: str, log_stream_name: str,
                            log_events: list[dict[str, Any]]) -> Any:
        result = put_log_events(self, log_group_name, log_stream_name, log_events)
        if store.recording:
            store.append_log(log_group_name, log_stream_name, log_events)
        return result

    create_log_stream = LogsBackend.create_log_stream

    def create_log_stream_hook(self: Any, log_group_name: str, log_stream_name: str) -> None:
        create_log_stream(self, log_group_name, log_stream_name)
        if store.recording:
            store.append_log(log_group_name, log_stream_name, [])

    SimpleSystemManagerBackend.put_parameter = put_parameter_hook  # type: ignore[method-assign]
    SimpleSystemManagerBackend.delete_parameter = delete_parameter_hook  # type: ignore[method-assign]
    SimpleSystemManagerBackend.delete_parameters = delete_parameters_hook  # type: ignore[method-assign]
    LogsBackend.put_log_events = put_log_events_hook  # type: ignore[method-assign]
    LogsBackend.create_log_stream = create_log_stream_hook  # type: ignore[method-assign]
    _originals.update(put_parameter=put_parameter, put_log_events=put_log_events,
                      create_log_stream=create_log_stream)


_originals: dict[str, Callable[..., Any]] = {}


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


def restore(store: Store, *, account: str, region: str) -> dict[str, int]:
    """Put the kept data back into a freshly provisioned moto. Restored writes are not
    written again, and restored objects send no S3 notification (they were sent once)."""
    from moto.logs.models import logs_backends
    from moto.s3.models import s3_backends
    from moto.sqs.models import sqs_backends
    from moto.ssm.models import ssm_backends

    counts = {"objects": 0, "messages": 0, "parameters": 0, "log_events": 0}
    s3 = s3_backends[account]["global"]
    store.tidy_objects()
    for record, body in store.objects():
        if record.get("bucket") not in s3.buckets:
            continue
        _put_in_moto(s3, record, body)
        counts["objects"] += 1

    sqs = sqs_backends[account][region]
    send = _originals["send_message"]
    for queue, old_id, record in list(store.messages()):
        if queue not in sqs.queues:
            store.delete_message(queue, old_id)
            continue
        with store.lock:
            message = send(sqs, queue, record["body"],
                           message_attributes=record.get("attributes") or None,
                           group_id=record.get("group_id"),
                           deduplication_id=record.get("deduplication_id"))
            store.put_message(queue, message.id, record)
            store.delete_message(queue, old_id)
        counts["messages"] += 1

    ssm = ssm_backends[account][region]
    put_parameter = _originals["put_parameter"]
    for record in store.parameters():
        put_parameter(ssm, record["name"], record.get("description") or "", record["value"],
                      record.get("type") or "String", None, None, True, [], "text", None, None)
        counts["parameters"] += 1

    logs = logs_backends[account][region]
    put_log_events = _originals["put_log_events"]
    create_log_stream = _originals["create_log_stream"]
    oldest = (time.time() - 14 * 86400 + 3600) * 1000
    for group, stream, events in store.log_batches():
        if group not in logs.groups:
            continue
        if stream not in logs.groups[group].streams:
            create_log_stream(logs, group, stream)
        kept = [e for e in events if e.get("timestamp", 0) >= oldest]
        if kept:
            put_log_events(logs, group, stream, kept)
            counts["log_events"] += len(kept)
    return counts
