"""Honest outcomes: a failed item is reported where and why it failed (from the dead-letter
queues), an id shared by several users is a warning that names them, and a followed upload
whose stage was dead-lettered without a log line carrying its id is failed, not stalled."""

from __future__ import annotations

import json
from typing import Any

import pytest

from collections_ops import errors
from collections_ops.cli.exits import TABLE, ExitCode
from collections_ops.services import dlq, uploads
from collections_ops.services import follow as following
from collections_ops.services import verify as verifying
from tests import images

CORRUPT = b"\xff\xd8\xff\xe0" + b"garbage" * 100


def exit_code(exc: errors.CollectionsError) -> int:
    return next(code for cls, code, _ in TABLE if isinstance(exc, cls))


def ship_logs(pipeline: Any, function_key: str, log_events: list[tuple[int, str]]) -> None:
    """What the dispatcher does with an invocation's lines: into the function's log group."""
    from collections_ops.pipeline import function

    logs = pipeline.client("logs")
    group = function(function_key).log_group(pipeline.env.name)
    stream = f"s-{function_key}"
    if not logs.describe_log_streams(logGroupName=group,
                                     logStreamNamePrefix=stream)["logStreams"]:
        logs.create_log_stream(logGroupName=group, logStreamName=stream)
    logs.put_log_events(logGroupName=group, logStreamName=stream, logEvents=[
        {"timestamp": ts, "message": line} for ts, line in log_events])


def test_verify_of_a_corrupt_upload_names_the_processor_and_the_reason(pipeline, db):
    pipeline.upload("user123/broken.jpg", CORRUPT)
    for event in pipeline.s3_events():
        assert pipeline.invoke("processor", event).result["status"] == "failed"
    s3, sqs = pipeline.client("s3"), pipeline.client("sqs")

    report = verifying.verify(db, s3, "broken")
    verifying.explain(report, dlq.find(sqs, pipeline.env, item_id="broken"))

    failed = [c for c in report.checks if c.failed]
    assert [c.name for c in failed] == ["item", "thumbnail"]
    assert failed[1].detail.startswith("failed in the processor (user user123): ")
    assert "unreadable image" in failed[1].detail
    assert "collections dlq show processor" in (failed[1].fix or "")
    assert report.dead_letters[0]["function_key"] == "processor"
    assert report.dead_letters[0]["terminal"] is True
    with pytest.raises(errors.VerifyFailed) as raised:
        verifying.raise_for_failure(report)
    assert "failed in the processor: " in str(raised.value)
    assert "unreadable image" in str(raised.value)
    assert exit_code(raised.value) == ExitCode.VERIFY_FAILED

    # Another user's item of that name is not explained by this user's dead letter.
    other = verifying.verify(db, s3, "broken", user_id="someone-else")
    verifying.explain(other, dlq.find(sqs, pipeline.env, item_id="broken",
                                      user_id="someone-else"))
    assert other.dead_letters == []
    with pytest.raises(errors.NotFound):
        verifying.raise_for_failure(other)


def test_an_id_shared_by_several_users_is_a_warning_naming_them(pipeline, db):
    for user in ("alice", "bob"):
        results = pipeline.run_to_end(f"{user}/same.jpg", images.photo())
        assert results["embedder"].ok

    report = verifying.verify(db, pipeline.client("s3"), "same")

    [shared] = [c for c in report.checks if not c.ok]
    assert shared.severity == "warning" and not shared.failed
    assert "alice" in shared.detail and "bob" in shared.detail
    assert report.ok  # the newest is complete: the warning does not fail it
    verifying.raise_for_failure(report)
    assert verifying.verify(db, pipeline.client("s3"), "same", user_id="alice").checks[0].ok


def test_a_dead_lettered_analyzer_stage_fails_the_follow_with_the_reason(pipeline, tmp_path):
    """The database went down while the analyzer ran: retried until given up, parked as
    RetriesExhausted. No analyzer line carries the correlation id (it is read from the row),
    so only the dead-letter queue says the stage failed."""
    from collections_core import runtime, state

    photo = tmp_path / "dusk.jpg"
    photo.write_bytes(images.photo())
    up = following.upload(pipeline.client("s3"), pipeline.images_bucket, photo,
                          user_id="user123")
    [s3_event] = pipeline.s3_events()
    processed = pipeline.invoke("processor", s3_event)
    assert processed.ok
    ship_logs(pipeline, "processor", processed.log_events)
    [event] = pipeline.receive("analyzer")

    ssm = pipeline.client("ssm")
    ssm.put_parameter(Name="/collections/local/DATABASE_URL_ANALYZER", Type="SecureString", Overwrite=True,
                      Value="postgresql://u:p@127.0.0.1:1/none")
    state.reset()
    analyzed = pipeline.invoke("analyzer", event)
    assert not analyzed.ok
    ship_logs(pipeline, "analyzer", analyzed.log_events)
    record = runtime.failure_record(
        function_name="collections-local-AnalyzerLambda", request_id=analyzed.request_id,
        event=event, condition="RetriesExhausted", error_type=analyzed.error_type,
        reason=analyzed.error_message)
    pipeline.client("sqs").send_message(QueueUrl=pipeline.dlq_urls["analyzer"],
                                        MessageBody=json.dumps(record))

    # Without the DLQ, the follower sees the processor done and then nothing: stalled.
    blind = following.Follower(pipeline.client("logs"), pipeline.env, up)
    progress = list(following.follow(blind, timeout_s=0, sleep=lambda s: None))[-1]
    assert [s.status for s in progress.stages] == ["done", "done", "pending", "pending"]
    with pytest.raises(errors.Stalled):
        uploads.check_followed(progress, up, timeout_s=0)

    follower = following.Follower(pipeline.client("logs"), pipeline.env, up,
                                  sqs=pipeline.client("sqs"))
    progress = list(following.follow(follower, timeout_s=60, sleep=lambda s: None))[-1]

    assert progress.failed is not None and progress.failed.name == "analysis"
    assert "RetriesExhausted" in progress.failed.detail
    assert "database unreachable" in progress.failed.detail
    with pytest.raises(errors.StageFailed) as raised:
        uploads.check_followed(progress, up, timeout_s=60)
    assert "the analysis stage (analyzer) failed" in str(raised.value)
    assert "database unreachable" in str(raised.value)
    assert exit_code(raised.value) == ExitCode.STAGE_FAILED

    # A batch follow of the same upload reads the same record.
    batch = following.BatchFollower(pipeline.client("logs"), pipeline.env, [up],
                                    sqs=pipeline.client("sqs"))
    [tracker] = list(batch.follow(timeout_s=60, sleep=lambda s: None))[-1]
    assert tracker.progress.failed is not None
    assert tracker.progress.failed.name == "analysis"
