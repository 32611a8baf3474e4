"""What `test-upload --follow` prints, from the real handlers' log lines: every line names the
item (the processor's first line comes before the row that decides the id), and `-o json` is
JSON Lines of flat objects, the final `result` too (README: one flat object per event).

The handlers run in process on moto + PostgreSQL; their log lines are written to CloudWatch
Logs as the local cloud's dispatcher writes them, and read back by the real follower."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from collections_ops.cli.render_follow import render_follow
from collections_ops.pipeline import function
from collections_ops.services import follow as following
from tests import images


def _followed(pipeline, tmp_path: Path, *, as_json: bool) -> following.Upload:
    photo = tmp_path / "kayak.jpg"
    photo.write_bytes(images.photo(seed=2))
    up = following.upload(pipeline.client("s3"), pipeline.images_bucket, photo,
                          user_id="user123")
    logs = pipeline.client("logs")
    results = {}
    for event in pipeline.s3_events():
        results["processor"] = pipeline.invoke("processor", event)
    for event in pipeline.receive("analyzer"):
        results["analyzer"] = pipeline.invoke("analyzer", event)
    for event in pipeline.receive("embedder"):
        results["embedder"] = pipeline.invoke("embedder", event)
    assert set(results) == {"processor", "analyzer", "embedder"}, results
    for key, result in results.items():
        group, stream = function(key).log_group("local"), uuid.uuid4().hex
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
        logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
            {"timestamp": ts, "message": msg} for ts, msg in result.log_events])
    follower = following.Follower(logs, pipeline.env, up)
    progress = render_follow(following.follow(follower, timeout_s=30), as_json=as_json,
                             upload=up)
    assert progress.complete, progress
    return up


def test_every_followed_line_names_the_item_the_first_processor_line_too(
        pipeline, db, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up = _followed(pipeline, tmp_path, as_json=False)
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln[:2].isdigit()]
    processor = [ln for ln in lines if " processor " in ln]
    # The first line that carries the correlation id is the download, before the row exists.
    assert processor and "Image downloaded" in processor[0], lines
    assert all(f" {up.item_id} " in ln for ln in lines), lines


def test_follow_json_is_flat_objects_ending_in_a_flat_result(
        pipeline, db, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    up = _followed(pipeline, tmp_path, as_json=True)
    records: list[dict[str, Any]] = [json.loads(ln) for ln in
                                     capsys.readouterr().out.splitlines()]
    flat = (str, int, float, bool, type(None))
    assert all(isinstance(v, flat) for r in records for v in r.values()), records
    logs = [r for r in records if r["type"] == "log"]
    first_processor = next(r for r in logs if r["function"] == "processor")
    assert first_processor["message"] == "Image downloaded"
    assert first_processor["item_id"] == up.item_id
    assert [r["stage"] for r in records if r["type"] == "stage"] == [
        "thumbnail", "analysis", "embedding"]
    result = records[-1]
    assert result["type"] == "result" and [r["type"] for r in records].count("result") == 1
    assert result["complete"] is True and result["failed_stage"] is None
    assert (result["item_id"], result["key"], result["correlation_id"]) == (
        up.item_id, up.key, up.correlation_id)
    assert all(isinstance(result[f"{stage}_ms"], int) for stage in
               ("thumbnail", "analysis", "embedding"))
    assert result["duration_ms"] >= result["embedding_ms"]
