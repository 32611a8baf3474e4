"""A load test: many distinct uploads at once, each followed to its embedding.

It generates `count` photo-like JPEGs (deterministic per index, so two runs upload the same
pixels), uploads them from a pool of `concurrency` threads under fresh keys, and follows them
all with one `BatchFollower` -- the same log-based tracking as `test-upload --follow`, so it
works the same against the local cloud and AWS and needs no database access. Every time in the
report comes from the functions' own log lines (millisecond timestamps) and the upload start;
the follower's polling interval does not blur them.

- throughput: completed uploads / (last embedding stored - first upload started);
- latency per stage: from the previous stage done (the upload, for the thumbnail) to this one
  done -- queueing and delivery included, which is where load shows; `handler` is the part
  spent inside the function (its first log line to its done line);
- end to end: upload started to embedding stored.
"""

from __future__ import annotations

import io
import math
import random
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from collections_ops import errors
from collections_ops.pipeline import FUNCTIONS, Environment
from collections_ops.services import follow

ClientFactory = Callable[[str], Any]
ImageFactory = Callable[[int], bytes]
STAGES = tuple(fn.stage for fn in FUNCTIONS)  # thumbnail, analysis, embedding
DEFAULT_SIZE = (1024, 768)


def photo_jpeg(index: int, size: tuple[int, int] = DEFAULT_SIZE, *, quality: int = 85) -> bytes:
    """A photo-like JPEG, the same for the same index: a sky-to-ground gradient, soft shapes
    of random colours, a little grain. Different indexes give different pixels."""
    from PIL import Image, ImageDraw, ImageFilter

    rng = random.Random(index)
    width, height = size
    top = (rng.randrange(60, 200), rng.randrange(100, 220), rng.randrange(150, 255))
    bottom = (rng.randrange(20, 140), rng.randrange(40, 160), rng.randrange(0, 100))
    mask = Image.linear_gradient("L").resize(size)
    im = Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), mask)
    draw = ImageDraw.Draw(im)
    for _ in range(rng.randint(12, 30)):
        x, y = rng.randrange(width), rng.randrange(height)
        r = rng.randint(8, max(9, width // 7))
        draw.ellipse([x - r, y - r, x + r, y + r],
                     fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    im = im.filter(ImageFilter.GaussianBlur(rng.uniform(1.0, 3.0)))
    grain = Image.frombytes("L", size, rng.randbytes(width * height)).convert("RGB")
    im = Image.blend(im, grain, 0.06)
    out = io.BytesIO()
    im.save(out, format="JPEG", quality=quality)
    return out.getvalue()


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


@dataclass(frozen=True)
class Stats:
    count: int
    p50: float
    p95: float
    max: float
    mean: float

    @classmethod
    def of(cls, values: list[float]) -> Stats | None:
        if not values:
            return None
        return cls(len(values), round(percentile(values, 50), 3), round(percentile(values, 95), 3),
                   round(max(values), 3), round(sum(values) / len(values), 3))


@dataclass(frozen=True)
class ItemResult:
    key: str
    item_id: str
    correlation_id: str
    size: int
    status: str  # done | failed | stalled
    stage: str | None  # the failed or stalled stage
    detail: str
    uploaded_ms: int
    done_ms: dict[str, int | None]  # stage -> when it was done (log time)
    handler_ms: dict[str, int | None]  # stage -> first log line to done line

    def latency_s(self) -> dict[str, float]:
        """Stage -> seconds from the previous stage done to this one done; plus end_to_end."""
        out: dict[str, float] = {}
        previous: int | None = self.uploaded_ms
        for stage in STAGES:
            done = self.done_ms.get(stage)
            if done is None or previous is None:
                break
            out[stage] = (done - previous) / 1000
            previous = done
        last = self.done_ms.get(STAGES[-1])
        if last is not None:
            out["end_to_end"] = (last - self.uploaded_ms) / 1000
        return out


@dataclass
class LoadReport:
    env: str
    count: int
    concurrency: int
    bytes_uploaded: int
    completed: int
    failed: int
    stalled: int
    upload_s: float  # all uploads, from the first started to the last returned
    wall_s: float  # from the first upload to the follower seeing the last one finished
    span_s: float | None  # first upload started -> last embedding stored (log time)
    throughput_per_s: float  # completed / span_s
    latency_s: dict[str, Stats | None]  # thumbnail, analysis, embedding, end_to_end
    handler_s: dict[str, Stats | None]  # thumbnail, analysis, embedding
    failures: dict[str, int]  # stage -> uploads that failed there
    stalls: dict[str, int]  # stage -> uploads still waiting for it at the timeout
    items: list[ItemResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.completed == self.count

    def as_dict(self, *, items: bool = True) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        if not items:
            out.pop("items")
        return out


def _item_result(tracker: follow.Tracker) -> ItemResult:
    up = tracker.upload
    stages = {s.name: s for s in tracker.progress.stages}
    failed = tracker.progress.failed
    if tracker.progress.complete:
        status, stage, detail = "done", None, ""
    elif failed is not None:
        status, stage, detail = "failed", failed.name, failed.detail
    else:
        current = tracker.progress.current
        status, stage, detail = "stalled", current.name, current.detail
    return ItemResult(
        key=up.key, item_id=up.item_id, correlation_id=up.correlation_id, size=up.size,
        status=status, stage=stage, detail=detail, uploaded_ms=up.started_ms,
        done_ms={name: stages[name].finished_ms if stages[name].status == "done" else None
                 for name in STAGES},
        handler_ms={name: stages[name].duration_ms if stages[name].status == "done" else None
                    for name in STAGES},
    )


def summarize(items: list[ItemResult], *, env: str, concurrency: int, upload_s: float,
              wall_s: float) -> LoadReport:
    """The report of a finished run, from each upload's stage times."""
    done = [i for i in items if i.status == "done"]
    latencies = [i.latency_s() for i in done]
    span_s = None
    if done:
        last = max(int(i.done_ms[STAGES[-1]] or 0) for i in done)
        span_s = (last - min(i.uploaded_ms for i in items)) / 1000
    throughput = len(done) / span_s if span_s and span_s > 0 else 0.0
    failures: dict[str, int] = {}
    stalls: dict[str, int] = {}
    for item in items:
        if item.status != "done" and item.stage:
            bucket = failures if item.status == "failed" else stalls
            bucket[item.stage] = bucket.get(item.stage, 0) + 1
    return LoadReport(
        env=env, count=len(items), concurrency=concurrency,
        bytes_uploaded=sum(i.size for i in items), completed=len(done),
        failed=sum(1 for i in items if i.status == "failed"),
        stalled=sum(1 for i in items if i.status == "stalled"),
        upload_s=round(upload_s, 3), wall_s=round(wall_s, 3),
        span_s=round(span_s, 3) if span_s is not None else None,
        throughput_per_s=round(throughput, 2),
        latency_s={name: Stats.of([lat[name] for lat in latencies])
                   for name in (*STAGES, "end_to_end")},
        handler_s={name: Stats.of([(i.handler_ms[name] or 0) / 1000 for i in done])
                   for name in STAGES},
        failures=failures, stalls=stalls, items=items,
    )


def _images_bucket(client_factory: ClientFactory, env: Environment) -> str:
    from collections_ops.target import for_environment

    account = for_environment(env).known_account
    if account is None:
        account = str(client_factory("sts").get_caller_identity()["Account"])
    return env.images_bucket(account)


def run_load_test(client_factory: ClientFactory, env: Environment, *, count: int,
                  concurrency: int = 8, timeout: float = 300.0, user_id: str = "loadtest",
                  image_factory: ImageFactory | None = None, bucket: str | None = None,
                  run_id: str | None = None, poll_interval_s: float = 1.0,
                  on_progress: Callable[[list[follow.Tracker]], None] | None = None,
                  clock: Callable[[], float] = time.monotonic) -> LoadReport:
    """Upload `count` generated images `concurrency` at a time, follow all of them to the end
    (or `timeout` seconds), and report throughput and per-stage latency.

    Keys are `<user_id>/load-<run_id>-<n>.jpg`, new for every run unless `run_id` is given.
    """
    if count < 1 or concurrency < 1:
        raise errors.UsageError("--count and --concurrency must be at least 1")
    make = image_factory or photo_jpeg
    run = run_id or uuid.uuid4().hex[:8]
    bucket = bucket or _images_bucket(client_factory, env)
    s3 = client_factory("s3")
    with tempfile.TemporaryDirectory(prefix="collections-load-") as tmp, \
            ThreadPoolExecutor(max_workers=concurrency) as pool:
        paths = list(pool.map(lambda n: _write(Path(tmp), f"load-{run}-{n:04d}.jpg", make(n)),
                              range(count)))
        started = clock()
        uploads = list(pool.map(
            lambda p: follow.upload(s3, bucket, p, user_id=user_id), paths))
        upload_s = clock() - started
    trackers: list[follow.Tracker] = []
    batch = follow.BatchFollower(client_factory("logs"), env, uploads)
    remaining = max(0.0, timeout - (clock() - started))
    for trackers in batch.follow(timeout_s=remaining, interval_s=poll_interval_s, clock=clock):
        if on_progress is not None:
            on_progress(trackers)
    wall_s = clock() - started
    items = [_item_result(t) for t in trackers]
    return summarize(items, env=env.name, concurrency=concurrency, upload_s=upload_s,
                     wall_s=wall_s)


def _write(folder: Path, name: str, data: bytes) -> Path:
    path = folder / name
    path.write_bytes(data)
    return path
