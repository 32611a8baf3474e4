"""Uploading a test image and following it through the pipeline by its correlation id.

The correlation id travels in the object's metadata and through both events; every log line a
handler writes about the upload carries it. The follower reads the three functions' log groups
with a CloudWatch Logs filter on that id, so it works the same against the local cloud and AWS,
without database access. It yields updates; rendering them is the CLI's job.
"""

from __future__ import annotations

import mimetypes
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from collections_ops import errors
from collections_ops.pipeline import FUNCTIONS, Environment, Function
from collections_ops.services.logs import LogEvent, LogReader

CORRELATION_METADATA = "correlation-id"
# The log message with which each function reports its stage done.
# The structured fields (`stage`, `outcome`) of the log event that ends each function's stage;
# matched as fields, never by message text, so rewording a log line cannot break following.
DONE_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "processor": (("stage", "published"),),
    "analyzer": (("stage", "published"),),
    "embedder": (("stage", "stored"), ("outcome", "duplicate")),
}


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

    @property
    def finished(self) -> bool:
        return self.progress.complete or self.progress.failed is not None


def _default_groups(env: Environment) -> dict[str, str]:
    return {fn.key: fn.log_group(env.name) for fn in FUNCTIONS}


class Follower:
    """Follows one upload: reads only the log lines that mention its correlation id."""

    def __init__(self, logs: Any, env: Environment, up: Upload,
                 groups: dict[str, str] | None = None) -> None:
        self._reader = LogReader(logs, groups or _default_groups(env),
                                 start_ms=up.started_ms - 1000, text=up.correlation_id)
        self.tracker = Tracker(up)
        self.progress = self.tracker.progress

    def poll(self) -> Progress:
        lines = self._reader.poll()
        for line in lines:
            self.tracker.apply(line)
        self.progress.new_lines = lines
        return self.progress


class BatchFollower:
    """Follows many uploads with one reader: each line goes to the upload whose correlation
    id it carries. Three API calls per poll, however many uploads."""

    def __init__(self, logs: Any, env: Environment, uploads: list[Upload],
                 groups: dict[str, str] | None = None) -> None:
        start = min(u.started_ms for u in uploads) - 1000
        self._reader = LogReader(logs, groups or _default_groups(env), start_ms=start)
        self.trackers = {u.correlation_id: Tracker(u) for u in uploads}

    def poll(self) -> list[Tracker]:
        for line in self._reader.poll():
            tracker = self.trackers.get(str(line.fields().get("correlation_id", "")))
            if tracker is not None:
                tracker.apply(line)
        return list(self.trackers.values())

    def follow(self, *, timeout_s: float, interval_s: float = 0.25,
               clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep) -> Iterator[list[Tracker]]:
        deadline = clock() + timeout_s
        while True:
            trackers = self.poll()
            yield trackers
            if all(t.finished for t in trackers) or clock() >= deadline:
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
        progress = follower.poll()
        yield progress
        if progress.complete or progress.failed or clock() >= deadline:
            return
        sleep(interval_s)
