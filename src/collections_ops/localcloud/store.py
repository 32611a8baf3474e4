"""The local cloud's durable data: what AWS would keep across a crash, kept under the state dir.

moto keeps everything in memory, so a `kill -9` of its process loses every object, queued
message and parameter. moto 5 offers one way to get state back, its recorder
(`/moto-api/recorder/…`): it logs every request and replays the log on demand. Replay does not
fit a queue consumer: every `ReceiveMessage` hands out fresh receipt handles, so replayed
`DeleteMessage` calls no longer match and every message ever delivered comes back; the log
also grows without bound and start-up time grows with it. There is no snapshot/restore API.

So the resources (buckets, queues, rules, functions, roles) are re-created from the pipeline
definition at every start, and only the *data* is kept, write-through, in plain files:

- S3 objects (body + metadata), written after moto accepted a PUT and before the client gets
  its answer (a WSGI wrapper, because moto sets metadata after `put_object` returns);
- SQS messages, one file per message, written in `send_message` (so S3 notifications and
  EventBridge deliveries, which moto makes in-process, are kept too) and removed when the
  message is deleted or purged. The notifications of an upload are written after its object
  (moto sends them while it stores the object, before the object reaches this store): a
  `kill -9` between the two left a kept notification of an object that was lost, which the
  processor then dead-lettered as missing. S3 never announces an object it has not kept;
- SSM parameters, and CloudWatch Logs events (appended, one JSON line per `PutLogEvents`).

An acknowledged write is therefore on disk before the client hears "OK": it survives a
`kill -9` of moto's process or of the whole local cloud (files reach the page cache before the
answer; they are not fsync'd, so an OS crash or power loss may lose the last writes). What is
not kept: in-flight visibility (after a restart every message is visible again, as after a
visibility timeout: at-least-once, as SQS promises), receive counts, old S3 versions of the
versioned bucket (the newest is kept), log events older than CloudWatch's 14-day window.

A full disk refuses uploads: a PUT that would leave less than twice its size plus 4 MB free is
answered with a 503 naming the cause, before moto sees it; a write that fails anyway is undone
and answered the same way. Uploads are refused rather than accepted and lost, and the rest of
the local cloud keeps running.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote

log = logging.getLogger("collections.localcloud")
STORE_DIR = "store"
FREE_MARGIN_BYTES = 4 * 1024 * 1024


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


class Store:
    """Files under `<state dir>/store`; every method is safe to call from any thread."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.lock = threading.RLock()
        # Off while resources are provisioned: what provisioning writes (S3's test event, log
        # streams) is made again at every start, and must not be restored on top of that.
        self.recording = True
        for sub in ("s3", "sqs", "ssm", "logs"):
            (root / sub).mkdir(parents=True, exist_ok=True)

    def has_room(self, incoming: int) -> bool:
        """Room for an object of `incoming` bytes and what it sets off (its notification, the
        handlers' messages, log lines, the thumbnail): refuse early rather than half-store."""
        try:
            stat = os.statvfs(self.root)
        except OSError:
            return True
        return stat.f_bavail * stat.f_frsize >= 2 * incoming + FREE_MARGIN_BYTES

    # ----------------------------------------------------------------- S3

    def _object_paths(self, bucket: str, key: str) -> tuple[Path, Path]:
        folder = self.root / "s3" / _digest(bucket)
        name = _digest(key)
        return folder / f"{name}.json", folder / f"{name}.bin"

    def put_object(self, bucket: str, key: str, body: bytes, metadata: dict[str, str]) -> None:
        meta, blob = self._object_paths(bucket, key)
        meta.parent.mkdir(exist_ok=True)
        _write_atomic(blob, body)  # the body first: a meta file always has its body
        _write_atomic(meta, json.dumps({"bucket": bucket, "key": key,
                                        "metadata": metadata}).encode())

    def delete_object(self, bucket: str, key: str) -> None:
        meta, blob = self._object_paths(bucket, key)
        meta.unlink(missing_ok=True)
        blob.unlink(missing_ok=True)

    def objects(self) -> Iterable[tuple[str, str, dict[str, str], Path]]:
        for meta in sorted((self.root / "s3").glob("*/*.json")):
            try:
                record = json.loads(meta.read_text())
            except (OSError, ValueError):
                continue
            blob = meta.with_suffix(".bin")
            if blob.exists():
                yield record["bucket"], record["key"], record.get("metadata", {}), blob

    # ----------------------------------------------------------------- SQS

    def _message_path(self, queue: str, message_id: str) -> Path:
        return self.root / "sqs" / queue / f"{message_id}.json"

    def put_message(self, queue: str, message_id: str, record: dict[str, Any]) -> None:
        path = self._message_path(queue, message_id)
        path.parent.mkdir(exist_ok=True)
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
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write(key)
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
        with open(self.root / "logs" / f"{_digest(group)}.jsonl", "a") as fh:
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
    """The messages one request sent while its object was not yet kept."""

    def __init__(self) -> None:
        self.messages: list[tuple[Any, str, Any, dict[str, Any]]] = []

    def keep(self, store: Store) -> None:
        """The object is kept: write the messages still queued (one the dispatcher received
        and deleted meanwhile is not written back)."""
        with store.lock:
            for backend, queue_name, message, record in self.messages:
                if _queued(backend, queue_name, message):
                    store.put_message(queue_name, message.id, record)

    def drop(self, store: Store) -> None:
        """The object was not kept (the upload is refused): its notifications go too."""
        with store.lock:
            for backend, queue_name, message, _ in self.messages:
                with contextlib.suppress(Exception):
                    backend.get_queue(queue_name)._messages.remove(message)


def _queued(backend: Any, queue_name: str, message: Any) -> bool:
    try:
        return any(m is message for m in backend.get_queue(queue_name)._messages)
    except Exception:
        return True  # cannot tell: keep it (at-least-once)


@contextlib.contextmanager
def held_messages() -> Iterator[HeldMessages]:
    """Messages sent by this thread inside the block are queued in moto at once but written
    to the store only by `keep` (or removed by `drop`)."""
    held = HeldMessages()
    _held.current = held
    try:
        yield held
    finally:
        _held.current = None


def install(store: Store) -> None:
    """Make moto's SQS, SSM and Logs backends write through to `store`. Call once, in the
    emulator's process, before it serves requests."""
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
                    held.messages.append((self, queue_name, message, record))
                else:
                    store.put_message(queue_name, message.id, record)
        return message

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
    Queue.delete_message = delete_message  # type: ignore[method-assign]
    SQSBackend.purge_queue = purge_queue  # type: ignore[method-assign]
    _originals.update(send_message=send)
    _install_ssm_and_logs(store)


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
        deleted = delete_parameters(self, names)
        for name in names:
            if name not in deleted:
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


def s3_middleware(app: Callable[..., Any], store: Store, buckets: set[str], *,
                  account: str) -> Callable[..., Any]:
    """Wrap moto's WSGI app: after a successful PUT/POST/DELETE of an object in one of
    `buckets` (path-style requests, as the local endpoint gets them), write the object from
    moto's backend to the store before the answer leaves."""

    def wrapped(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("PUT", "POST", "DELETE"):
            return app(environ, start_response)
        path = unquote(environ.get("PATH_INFO", ""))
        bucket, _, key = path.lstrip("/").partition("/")
        if bucket not in buckets:
            return app(environ, start_response)
        if method == "PUT" and key and not store.has_room(
                int(environ.get("CONTENT_LENGTH") or 0)):
            return _unavailable(start_response, "no space left on device")
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured["status"], captured["headers"] = status, headers
            return lambda data: None  # moto's app returns its body; it never calls write()

        # The object first, then its notifications, then the answer.
        with held_messages() as held:
            body = b"".join(app(environ, capture))
        ok = captured.get("status", "500").startswith("2")
        if ok and key:
            try:
                _sync_object(store, bucket, key, account=account)
            except OSError as exc:  # a full disk: undo, and say why
                log.error("could not keep s3://%s/%s: %s", bucket, key, exc)
                held.drop(store)
                _undo_put(bucket, key, account=account)
                return _unavailable(start_response, str(exc.strerror or exc))
        elif ok and method == "POST" and "delete" in environ.get("QUERY_STRING", ""):
            _sync_bucket(store, bucket, account=account)  # DeleteObjects: reconcile
        held.keep(store)
        start_response(captured["status"], captured["headers"])
        return [body]

    return wrapped


def _unavailable(start_response: Callable[..., Any], why: str) -> list[bytes]:
    message = (f"the local cloud refused the upload: it could not be stored ({why}); "
               "free disk space under the local cloud's state directory")
    error = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>ServiceUnavailable'
             f"</Code><Message>{message}</Message></Error>").encode()
    start_response("503 Service Unavailable", [("Content-Type", "application/xml"),
                                               ("Content-Length", str(len(error)))])
    return [error]


def _bucket(name: str, *, account: str) -> Any:
    from moto.s3.models import s3_backends

    return s3_backends[account]["global"].buckets.get(name)


def _sync_object(store: Store, bucket_name: str, key: str, *, account: str) -> None:
    with store.lock:
        bucket = _bucket(bucket_name, account=account)
        current = bucket.keys.get(key) if bucket is not None else None
        if current is None or getattr(current, "is_delete_marker", False) \
                or not hasattr(current, "value"):
            store.delete_object(bucket_name, key)
            return
        store.put_object(bucket_name, key, current.value, dict(current.metadata))


def _sync_bucket(store: Store, bucket_name: str, *, account: str) -> None:
    with store.lock:
        bucket = _bucket(bucket_name, account=account)
        live = set(bucket.keys.keys()) if bucket is not None else set()
        for stored_bucket, key, _, _ in list(store.objects()):
            if stored_bucket == bucket_name and key not in live:
                store.delete_object(bucket_name, key)


def _undo_put(bucket_name: str, key: str, *, account: str) -> None:
    from moto.s3.models import s3_backends

    try:
        s3_backends[account]["global"].delete_object(bucket_name, key)
    except Exception as exc:
        log.warning("could not undo the PUT of s3://%s/%s: %s", bucket_name, key, exc)


def restore(store: Store, *, account: str, region: str) -> dict[str, int]:
    """Put the kept data back into a freshly provisioned moto. Restored writes are not
    written again, and restored objects send no S3 notification (they were sent once)."""
    from moto.logs.models import logs_backends
    from moto.s3.models import s3_backends
    from moto.sqs.models import sqs_backends
    from moto.ssm.models import ssm_backends

    counts = {"objects": 0, "messages": 0, "parameters": 0, "log_events": 0}
    s3 = s3_backends[account]["global"]
    for bucket, key, metadata, blob in store.objects():
        if bucket not in s3.buckets:
            continue
        restored = s3.put_object(bucket, key, blob.read_bytes(), disable_notification=True)
        restored.set_metadata(metadata)
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
