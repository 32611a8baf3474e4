"""Uploading test images: one, many (in parallel), or the bundled sample — and what the result
of following them means (failed in a stage, stalled), as domain errors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from collections_ops import errors, paths
from collections_ops.services import follow as following
from collections_ops.services.follow import Progress, Tracker, Upload

PARALLEL_UPLOADS = 8
SAMPLE_NAME = "test-image.jpg"


def sample_image() -> Path:
    """The sample image shipped with the package (the guide's `test-image.jpg`)."""
    try:
        sample = paths.samples_root() / SAMPLE_NAME
    except FileNotFoundError:
        sample = Path(SAMPLE_NAME)
    if not sample.is_file():
        raise errors.NotFound(f"the bundled sample {SAMPLE_NAME} is missing from this install",
                              "reinstall collections-ops, or pass an image file")
    return sample


def upload_many(s3: Any, bucket: str, files: list[Path], *, user_id: str,
                workers: int = PARALLEL_UPLOADS) -> list[Upload]:
    from concurrent.futures import ThreadPoolExecutor

    def upload(path: Path) -> Upload:
        return following.upload(s3, bucket, path, user_id=user_id)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(upload, files))


def check_followed(progress: Progress, up: Upload, *, timeout_s: float) -> None:
    """StageFailed or Stalled for a followed upload that did not complete."""
    if progress.failed:
        stage = progress.failed
        key = stage.function.key if stage.function else "all"
        raise errors.StageFailed(f"the {stage.name} stage ({key}) failed: {stage.detail}",
                                 f"see `collections logs {key} --item {up.item_id}` and "
                                 f"`collections dlq show {key}`")
    if not progress.complete:
        stage = progress.current
        raise errors.Stalled(f"timed out after {timeout_s:.0f} s waiting for the {stage.name} "
                             "stage" + (f" ({stage.detail})" if stage.detail else ""),
                             "check the function's logs and its dead-letter queue")


def check_batch(trackers: list[Tracker], *, timeout_s: float) -> None:
    failed = [t for t in trackers if t.progress.failed]
    stalled = [t for t in trackers if not t.finished]
    if failed:
        stages = sorted({t.progress.failed.name for t in failed if t.progress.failed})
        raise errors.StageFailed(f"{len(failed)} of {len(trackers)} uploads failed "
                                 f"(stage: {', '.join(stages)})",
                                 "see the table above and `collections logs`")
    if stalled:
        stages = sorted({t.progress.current.name for t in stalled})
        raise errors.Stalled(f"{len(stalled)} of {len(trackers)} uploads did not finish in "
                             f"{timeout_s:.0f} s (waiting for: {', '.join(stages)})",
                             "check the functions' logs and dead-letter queues")
