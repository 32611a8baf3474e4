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

This module is the files (`Store`); moto's backends write through to it by the hooks of
`store_objects` (S3), `store_messages` (SQS) and `store_ssm_logs` (SSM, Logs), which
`write_through` installs and reads back.
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
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
