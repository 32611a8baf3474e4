"""Uploading a test image and following it through the pipeline by its correlation id.

The correlation id travels in the object's metadata and through both events; every log line a
handler writes about the upload carries it. The follower reads the three functions' log groups
with a CloudWatch Logs filter on that id, so it works the same against the local cloud and AWS,
without database access. It yields updates; rendering them is the CLI's job.

A stage whose event was dead-lettered without a log line carrying the id (retries exhausted,
or refused before the handler knew the id) would look stalled: so the follower also looks, every
few seconds and once more at the deadline, in the dead-letter queue of the stage it is waiting
on, for a record of this upload (by its S3 key and time for the processor's S3 event, by the
correlation id the EventBridge details carry for the others).
"""

from __future__ import annotations

import mimetypes
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from collections_ops import errors
from collections_ops.pipeline import FUNCTIONS, Environment, Function
from collections_ops.services.logs import LogEvent, LogReader

if TYPE_CHECKING:
    from collections_ops.services.dlq_records import FailedEvent

CORRELATION_METADATA = "correlation-id"
# The log message with which each function reports its stage done.
# The structured fields (`stage`, `outcome`) of the log event that ends each function's stage;
# matched as fields, never by message text, so rewording a log line cannot break following.
DONE_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "processor": (("stage", "published"),),
    "analyzer": (("stage", "published"),),
    "embedder": (("stage", "stored"), ("outcome", "duplicate")),
}
DLQ_CHECK_INTERVAL_S = 2.0  # how often a follower looks in the awaited stage's DLQ


@dataclass(frozen=True)
class Upload:
    bucket: str
    key: str
    user_id: str
    item_id: str
    correlation_id: str
    size: int
    started_ms: int


def upload(s3: Any, bucket: str, path: Path, *, user_id: str, name: str | None = None,
           now: Callable[[], float] = time.time) -> Upload:
    if not path.is_file():
        raise errors.NotFound(f"no such file: {path}")
    if "/" in user_id or not user_id:
        raise errors.UsageError(f"invalid user id {user_id!r}", "a user id has no '/'")
    filename = name or path.name
    key = f"{user_id}/{filename}"
    correlation_id = uuid.uuid4().hex
    started_ms = int(now() * 1000)
    content_type = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    s3.upload_file(str(path), bucket, key, ExtraArgs={
        "Metadata": {CORRELATION_METADATA: correlation_id}, "ContentType": content_type})
    stem = filename.rpartition(".")[0] or filename
    return Upload(bucket, key, user_id, stem, correlation_id, path.stat().st_size, started_ms)


@dataclass
class Stage:
    name: str
    function: Function | None
    status: str = "pending"  # pending | running | done | failed
    started_ms: int | None = None
    finished_ms: int | None = None
    detail: str = ""

    @property
    def duration_ms(self) -> int | None:
        if self.started_ms is None or self.finished_ms is None:
            return None
        return self.finished_ms - self.started_ms


@dataclass
class Progress:
    stages: list[Stage]
    new_lines: list[LogEvent] = field(default_factory=list)

    @property
    def failed(self) -> Stage | None:
        return next((s for s in self.stages if s.status == "failed"), None)

    @property
    def complete(self) -> bool:
        return all(s.status == "done" for s in self.stages)

    @property
    def current(self) -> Stage:
        return next((s for s in self.stages if s.status != "done"), self.stages[-1])


class Tracker:
    """The stages of one upload, advanced by the log lines that carry its correlation id."""

    def __init__(self, up: Upload) -> None:
        self.upload = up
        uploaded = Stage("uploaded", None, "done", up.started_ms, up.started_ms,
                         f"s3://{up.bucket}/{up.key}")
        self.progress = Progress([uploaded, *(Stage(fn.stage, fn) for fn in FUNCTIONS)])

    def apply(self, line: LogEvent) -> None:
        stage = next(s for s in self.progress.stages if s.function
                     and s.function.key == line.function_key)
        payload = line.fields()
        message = str(payload.get("message", line.message))
        if stage.status == "pending":
            stage.status, stage.started_ms = "running", line.timestamp
        outcome = payload.get("outcome")
        if outcome == "failed":
            stage.status, stage.finished_ms = "failed", line.timestamp
            stage.detail = str(payload.get("reason") or message)
        elif outcome in ("retry", "error") and stage.status == "running":
            stage.detail = f"retrying: {payload.get('reason') or message}"
        elif stage.status != "failed" and any(
                payload.get(key) == value for key, value in DONE_FIELDS[line.function_key]):
            stage.status, stage.finished_ms, stage.detail = "done", line.timestamp, ""

    def awaited(self) -> Stage | None:
        """The stage being waited on, while the upload is not finished."""
        if self.finished:
            return None
        stage = self.progress.current
        return stage if stage.function is not None else None

    def is_mine(self, failed: FailedEvent) -> bool:
        """Whether a dead letter of the awaited stage is this upload's (structured fields)."""
        if failed.event_kind == "s3":
            # An S3 event has no correlation id: the key, dead-lettered after this upload.
            return failed.key == self.upload.key and failed.failed_at is not None \
                and failed.failed_at * 1000 >= self.upload.started_ms - 2000
        return failed.correlation_id == self.upload.correlation_id

    def dead_lettered(self, failed: FailedEvent) -> None:
        stage = self.awaited()
        if stage is None:
            return
        stage.status = "failed"
        stage.finished_ms = int(failed.failed_at * 1000) if failed.failed_at else None
        stage.detail = f"dead-lettered ({failed.condition or 'failed'}): {failed.error}"

    @property
    def finished(self) -> bool:
        return self.progress.complete or self.progress.failed is not None


class DeadLetterCheck:
    """Looks, at most every DLQ_CHECK_INTERVAL_S, in the DLQs of the stages being waited on."""

    def __init__(self, sqs: Any, env: Environment, *,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._sqs, self._env, self._clock = sqs, env, clock
        self._last: float | None = None

    def __call__(self, trackers: list[Tracker], *, force: bool = False) -> None:
        if self._sqs is None:
            return
        now = self._clock()
        if not force and self._last is not None and now - self._last < DLQ_CHECK_INTERVAL_S:
            return
        self._last = now
        from collections_ops.services import dlq

        waiting: dict[str, list[Tracker]] = {}
        for tracker in trackers:
            stage = tracker.awaited()
            if stage is not None and stage.function is not None:
                waiting.setdefault(stage.function.key, []).append(tracker)
        for key, group in waiting.items():
            try:
                failed = dlq.find(self._sqs, self._env, function_keys=[key])
            except Exception:
                # The logs stay the primary source: a DLQ that cannot be read (no permission,
                # SQS unreachable) must not end the follow; it only loses this refinement.
                self._sqs = None
                return
            for tracker in group:
                mine = next((f for f in failed if tracker.is_mine(f)), None)
                if mine is not None:
                    tracker.dead_lettered(mine)


def _default_groups(env: Environment) -> dict[str, str]:
    return {fn.key: fn.log_group(env.name) for fn in FUNCTIONS}


class Follower:
    """Follows one upload: reads only the log lines that mention its correlation id."""

    def __init__(self, logs: Any, env: Environment, up: Upload,
                 groups: dict[str, str] | None = None, *, sqs: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._reader = LogReader(logs, groups or _default_groups(env),
                                 start_ms=up.started_ms - 1000, text=up.correlation_id)
        self.tracker = Tracker(up)
        self.progress = self.tracker.progress
        self._dead_letters = DeadLetterCheck(sqs, env, clock=clock)

    def poll(self, *, last: bool = False) -> Progress:
        lines = self._reader.poll()
        for line in lines:
            self.tracker.apply(line)
        self._dead_letters([self.tracker], force=last)
        self.progress.new_lines = lines
        return self.progress


class BatchFollower:
    """Follows many uploads with one reader: each line goes to the upload whose correlation
    id it carries. Three API calls per poll, however many uploads."""

    def __init__(self, logs: Any, env: Environment, uploads: list[Upload],
                 groups: dict[str, str] | None = None, *, sqs: Any = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        start = min(u.started_ms for u in uploads) - 1000
        self._reader = LogReader(logs, groups or _default_groups(env), start_ms=start)
        self.trackers = {u.correlation_id: Tracker(u) for u in uploads}
        self._dead_letters = DeadLetterCheck(sqs, env, clock=clock)

    def poll(self, *, last: bool = False) -> list[Tracker]:
        for line in self._reader.poll():
            tracker = self.trackers.get(str(line.fields().get("correlation_id", "")))
            if tracker is not None:
                tracker.apply(line)
        trackers = list(self.trackers.values())
        self._dead_letters(trackers, force=last)
        return trackers

    def follow(self, *, timeout_s: float, interval_s: float = 0.25,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> Iterator[list[Tracker]]:
        deadline = clock() + timeout_s
        while True:
            last = clock() >= deadline  # the final poll also reads the DLQs, whenever last read
            trackers = self.poll(last=last)
            yield trackers
            if all(t.finished for t in trackers) or last:
                return
            sleep(interval_s)


def expand_paths(inputs: list[Path]) -> list[Path]:
    """Files as given; folders expanded to the images in them (not recursive), sorted."""
    suffixes = {".jpg", ".jpeg", ".png", ".webp", ".gif"}
    files: list[Path] = []
    for path in inputs:
        if path.is_dir():
            files += sorted(p for p in path.iterdir()
                            if p.is_file() and p.suffix.lower() in suffixes)
        elif path.is_file():
            files.append(path)
        else:
            raise errors.NotFound(f"no such file or folder: {path}")
    if not files:
        raise errors.NotFound("no images to upload", "give image files or a folder of them")
    return files


def follow(follower: Follower, *, timeout_s: float, interval_s: float = 0.25,
           clock: Callable[[], float] = time.monotonic,
           sleep: Callable[[float], None] = time.sleep) -> Iterator[Progress]:
    """Yield progress until every stage is done, one fails, or `timeout_s` passes."""
    deadline = clock() + timeout_s
    while True:
        last = clock() >= deadline  # the final poll also reads the DLQs, whenever last read
        progress = follower.poll(last=last)
        yield progress
        if progress.complete or progress.failed or last:
            return
        sleep(interval_s)
