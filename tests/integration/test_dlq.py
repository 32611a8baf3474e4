"""Dead-letter queues against moto and a real PostgreSQL: failures land there from the real
handlers, `peek` decodes them without losing any, and `redrive` replays them to where they came
from -- deleting a dead letter only once its replay was accepted."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest

from collections_ops.pipeline import environment
from collections_ops.services import dlq, dlq_records, dlq_redrive
from tests import images
from tests.e2e.cli import wait_for
from tests.fakes.lambda_invoke import FakeLambda

_wait = partial(wait_for, timeout=45, interval=0.1)

CORRUPT = b"\xff\xd8\xff\xe0" + b"garbage" * 100


def counts(db: Any, user_id: str, item_id: str) -> tuple[int, ...]:
    return tuple(
        db.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s AND {col} = %s",
                   (user_id, item_id)).fetchone()[0]
        for table, col in (("items", "id"), ("analyses", "item_id"), ("embeddings", "item_id")))


def depth(pipeline: Any, function_key: str) -> int:
    infos = {q.function_key: q for q in dlq.list_queues(pipeline.client("sqs"), pipeline.env)}
    return int(infos[function_key].depth or 0)


def fail_uploads(pipeline: Any, names: list[str]) -> None:
    """Upload corrupt images and run the processor on each: each lands in its dead-letter queue."""
    for name in names:
        pipeline.upload(f"user123/{name}.jpg", CORRUPT)
    for event in pipeline.s3_events():
        assert pipeline.invoke("processor", event).result["status"] == "failed"


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


# --------------------------------------------------------------------------- reading


def test_a_corrupt_upload_shows_its_stage_item_and_error_and_stays_queued(pipeline):
    fail_uploads(pipeline, ["broken photo"])
    sqs = pipeline.client("sqs")

    [failed] = dlq.peek(sqs, pipeline.env, "processor")

    assert (failed.stage, failed.user_id, failed.item_id) == ("thumbnail", "user123",
                                                              "broken photo")
    assert failed.key == "user123/broken photo.jpg"  # decoded from the notification's key
    assert failed.format == dlq_records.LAMBDA_RECORD and failed.event_kind == "s3"
    assert failed.condition == "TerminalError"
    assert failed.error_type == "TerminalError" and "unreadable image" in failed.error
    assert failed.failed_at is not None and abs(failed.failed_at - time.time()) < 60
    assert "receipt_handle" not in failed.as_dict()
    # Reading lost nothing and left the message visible for the next reader.
    assert [e.message_id for e in dlq.peek(sqs, pipeline.env, "processor")] == \
        [failed.message_id]
    queues = {q.function_key: q for q in dlq.list_queues(sqs, pipeline.env)}
    assert queues["processor"].depth == 1 and queues["processor"].in_flight == 0
    assert queues["processor"].queue_name == "collections-local-ImageProcessorLambda-dlq"
    assert queues["processor"].oldest_age_s is not None and queues["processor"].oldest_age_s >= 0
    assert queues["analyzer"].depth == 0 and queues["analyzer"].oldest_age_s is None


def test_an_eventbridge_dead_letter_is_decoded_from_its_attributes(pipeline):
    sqs = pipeline.client("sqs")
    event = {"version": "0", "id": "6a7e8feb", "detail-type": "ImageProcessed",
             "source": "collections.imageprocessor", "account": "123456789012",
             "time": "2026-11-29T10:00:00Z", "region": "us-east-1", "resources": [],
             "detail": {"item_id": "sunset", "user_id": "u7", "bucket": pipeline.images_bucket,
                        "original_key": "u7/sunset.jpg"}}
    attributes = {
        "RULE_ARN": "arn:aws:events:us-east-1:123456789012:rule/collections-local-ImageProcessedRule",
        "TARGET_ARN": "arn:aws:lambda:us-east-1:123456789012:function:collections-local-AnalyzerLambda",
        "ERROR_CODE": "SDK_CLIENT_ERROR",
        "ERROR_MESSAGE": "Unable to invoke Lambda function: Rate Exceeded",
    }
    sqs.send_message(QueueUrl=pipeline.dlq_urls["analyzer"], MessageBody=json.dumps(event),
                     MessageAttributes={k: {"DataType": "String", "StringValue": v}
                                        for k, v in attributes.items()})

    [failed] = dlq.peek(sqs, pipeline.env, "analyzer")

    assert failed.format == dlq_records.EVENTBRIDGE_DLQ and failed.stage == "analysis"
    assert (failed.user_id, failed.item_id) == ("u7", "sunset")
    assert failed.condition == "SDK_CLIENT_ERROR" and "Rate Exceeded" in failed.error
    assert failed.rule_arn.endswith("rule/collections-local-ImageProcessedRule")
    assert failed.event == event

    report = dlq_redrive.redrive(pipeline.client, pipeline.env, "analyzer", rate_per_s=100)

    assert (report.replayed, report.failed, report.skipped) == (1, 0, 0)
    assert report.outcomes[0].target == "rule collections-local-ImageProcessedRule (put_events)"
    [delivered] = pipeline.receive("analyzer")  # the rule delivered it again
    assert delivered["detail"] == event["detail"]
    assert delivered["source"] == event["source"]
    assert depth(pipeline, "analyzer") == 0


# --------------------------------------------------------------------------- redriving


def test_an_analyzer_failure_redriven_after_the_fix_completes(pipeline, db, monkeypatch):
    monkeypatch.setenv("ANALYZER_PROVIDER", "no-such-provider")  # an operator's mistake
    pipeline.upload("user123/later.jpg", images.photo())
    [s3_event] = pipeline.s3_events()
    assert pipeline.invoke("processor", s3_event).ok
    [event] = pipeline.receive("analyzer")
    assert pipeline.invoke("analyzer", event).result["status"] == "failed"
    sqs = pipeline.client("sqs")
    [failed] = dlq.peek(sqs, pipeline.env, "analyzer")
    assert (failed.stage, failed.item_id, failed.event_kind) == ("analysis", "later",
                                                                "eventbridge")
    assert "unknown analyzer provider 'no-such-provider'" in failed.error
    assert counts(db, "user123", "later") == (1, 0, 0)

    monkeypatch.setenv("ANALYZER_PROVIDER", "local")  # fixed
    report = dlq_redrive.redrive(pipeline.client, pipeline.env, "analyzer", rate_per_s=100)

    assert (report.replayed, report.failed, report.skipped) == (1, 0, 0)
    assert dlq.peek(sqs, pipeline.env, "analyzer") == []
    [replayed] = pipeline.receive("analyzer")
    assert replayed["detail"] == event["detail"]
    assert pipeline.invoke("analyzer", replayed).result["status"] == "analyzed"
    for e in pipeline.receive("embedder"):
        assert pipeline.invoke("embedder", e).ok
    assert counts(db, "user123", "later") == (1, 1, 1)
    row = db.execute("SELECT embedding_model FROM embeddings WHERE item_id = 'later'").fetchone()
    assert row == ("multilingual-e5-small-q4",)


def test_a_processor_run_that_exhausted_its_retries_is_redriven_to_its_queue(pipeline, db):
    """The database was down: Lambda (here: the test, as the dispatcher does) gave up and
    wrote a RetriesExhausted record. Locally the S3 event goes back on the trigger queue."""
    from collections_core import runtime, state

    ssm = pipeline.client("ssm")
    good = ssm.get_parameter(Name="/collections/local/DATABASE_URL_PROCESSOR", WithDecryption=True)
    ssm.put_parameter(Name="/collections/local/DATABASE_URL_PROCESSOR", Type="SecureString", Overwrite=True,
                      Value="postgresql://u:p@127.0.0.1:1/none")
    pipeline.upload("user123/outage day.jpg", images.photo())
    [event] = pipeline.s3_events()
    result = pipeline.invoke("processor", event)
    assert not result.ok and result.error_type == "RetryableError"
    record = runtime.failure_record(
        function_name="collections-local-ImageProcessorLambda", request_id=result.request_id,
        event=event, condition="RetriesExhausted", error_type=result.error_type,
        reason=result.error_message)
    record["requestContext"]["approximateInvokeCount"] = 3
    pipeline.client("sqs").send_message(QueueUrl=pipeline.dlq_urls["processor"],
                                        MessageBody=json.dumps(record))
    [failed] = dlq.peek(pipeline.client("sqs"), pipeline.env, "processor")
    assert (failed.condition, failed.attempts, failed.item_id) == ("RetriesExhausted", 3,
                                                                   "outage day")
    assert "database unreachable" in failed.error

    ssm.put_parameter(Name="/collections/local/DATABASE_URL_PROCESSOR", Type="SecureString", Overwrite=True,
                      Value=good["Parameter"]["Value"])
    state.reset()  # the secret cache of this "container"
    report = dlq_redrive.redrive(pipeline.client, pipeline.env, "processor", rate_per_s=100)

    assert report.replayed == 1
    assert report.outcomes[0].target == "queue collections-local-ImageProcessorLambda-events"
    assert pipeline.s3_events() == [event]  # the very same event, back on the trigger queue
    assert pipeline.invoke("processor", event).ok
    for e in pipeline.receive("analyzer"):
        assert pipeline.invoke("analyzer", e).ok
    for e in pipeline.receive("embedder"):
        assert pipeline.invoke("embedder", e).ok
    assert counts(db, "user123", "outage day") == (1, 1, 1)
    assert depth(pipeline, "processor") == 0


def test_nothing_is_lost_when_a_redrive_fails_halfway(pipeline):
    names = ["a", "b", "c", "d"]
    fail_uploads(pipeline, names)
    replayed: list[str] = []

    def flaky(failed: dlq_records.FailedEvent) -> str:
        if len(replayed) == 1:
            replayed.append(f"FAILED:{failed.item_id}")
            raise dlq_redrive.ReplayError("Lambda answered 500")
        replayed.append(str(failed.item_id))
        return "somewhere"

    report = dlq_redrive.redrive(pipeline.client, pipeline.env, "processor", replay=flaky, include_terminal=True,
                         rate_per_s=100)

    assert (report.replayed, report.failed, report.skipped) == (1, 1, 0)
    assert report.stopped_early
    assert report.outcomes[1].detail == "Lambda answered 500"
    first = replayed[0]
    left = sorted(str(e.item_id) for e in dlq.peek(pipeline.client("sqs"), pipeline.env,
                                                    "processor"))
    assert left == sorted(n for n in names if n != first)  # 2..n all still there
    assert depth(pipeline, "processor") == 3  # and visible again at once

    # With keep_going, a failure is skipped over and the rest are replayed.
    unlucky = left[0]

    def fails_on_one(failed: dlq_records.FailedEvent) -> str:
        if failed.item_id == unlucky:
            raise RuntimeError("connection reset")
        return "somewhere"

    report = dlq_redrive.redrive(pipeline.client, pipeline.env, "processor", replay=fails_on_one, include_terminal=True,
                         keep_going=True, rate_per_s=100)
    assert (report.replayed, report.failed, report.stopped_early) == (2, 1, False)
    assert "RuntimeError: connection reset" in next(
        o.detail for o in report.outcomes if o.status == "failed")
    assert [e.item_id for e in dlq.peek(pipeline.client("sqs"), pipeline.env,
                                        "processor")] == [unlucky]


def test_a_dry_run_deletes_and_sends_nothing(pipeline):
    fail_uploads(pipeline, ["x1", "x2", "x3"])

    report = dlq_redrive.redrive(pipeline.client, pipeline.env, "processor", dry_run=True,
                         include_terminal=True)

    assert (report.would_replay, report.replayed, report.failed) == (3, 0, 0)
    assert {o.target for o in report.outcomes} == {
        "queue collections-local-ImageProcessorLambda-events"}
    assert all("unreadable image" in o.detail for o in report.outcomes)
    assert depth(pipeline, "processor") == 3
    assert len(dlq.peek(pipeline.client("sqs"), pipeline.env, "processor")) == 3
    assert pipeline.s3_events() == []


def test_redrive_honours_the_rate_with_an_injected_clock(pipeline):
    fail_uploads(pipeline, ["r1", "r2", "r3", "r4", "r5"])
    clock = FakeClock()
    at: list[float] = []

    def replay(failed: dlq_records.FailedEvent) -> str:
        at.append(clock())
        return "somewhere"

    report = dlq_redrive.redrive(pipeline.client, pipeline.env, "processor", replay=replay,
                         include_terminal=True, rate_per_s=2, clock=clock, sleep=clock.sleep)

    assert report.replayed == 5
    assert at == pytest.approx([0.0, 0.5, 1.0, 1.5, 2.0])
    assert sum(clock.slept) == pytest.approx(2.0)


def test_max_messages_limits_a_redrive(pipeline):
    fail_uploads(pipeline, ["m1", "m2", "m3"])
    report = dlq_redrive.redrive(pipeline.client, pipeline.env, "processor", max_messages=2,
                         include_terminal=True, replay=lambda failed: "somewhere", rate_per_s=100)
    assert report.replayed == 2
    assert depth(pipeline, "processor") == 1


def test_a_terminal_failure_is_skipped_and_kept_unless_included(pipeline, db):
    """One corrupt upload (terminal: it can never succeed) and one run that exhausted its
    retries while the database was down (retryable): a redrive re-queues only the second."""
    from collections_core import runtime

    fail_uploads(pipeline, ["corrupt"])
    pipeline.upload("user123/outage.jpg", images.photo())
    [event] = pipeline.s3_events()
    record = runtime.failure_record(
        function_name="collections-local-ImageProcessorLambda", request_id="r-1", event=event,
        condition="RetriesExhausted", error_type="RetryableError",
        reason="database unreachable")
    pipeline.client("sqs").send_message(QueueUrl=pipeline.dlq_urls["processor"],
                                        MessageBody=json.dumps(record))
    sqs = pipeline.client("sqs")
    assert {(f.item_id, f.terminal) for f in dlq.peek(sqs, pipeline.env, "processor")} == {
        ("corrupt", True), ("outage", False)}

    report = dlq_redrive.redrive(pipeline.client, pipeline.env, "processor", rate_per_s=100)

    assert (report.replayed, report.skipped, report.skipped_terminal) == (1, 1, 1)
    by_item = {o.item_id: o for o in report.outcomes}
    assert by_item["outage"].status == "replayed"
    assert by_item["corrupt"].status == "skipped" and by_item["corrupt"].terminal
    assert "unreadable image" in by_item["corrupt"].detail
    assert report.as_dict()["requeued"] == 1 and report.as_dict()["skipped_terminal"] == 1
    assert pipeline.s3_events() == [event]  # only the retryable one went back
    assert [f.item_id for f in dlq.peek(sqs, pipeline.env, "processor")] == ["corrupt"]

    fail_uploads(pipeline, ["corrupt again"])
    report = dlq_redrive.redrive(pipeline.client, pipeline.env, "processor", rate_per_s=100,
                         include_terminal=True)
    assert (report.replayed, report.skipped) == (2, 0)
    assert depth(pipeline, "processor") == 0


def test_events_that_cannot_go_back_are_skipped_and_kept(pipeline):
    sqs = pipeline.client("sqs")
    url = pipeline.dlq_urls["analyzer"]
    sqs.send_message(QueueUrl=url, MessageBody="not json at all")
    wrong = {"source": "someone.else", "detail-type": "Other", "detail": {"item_id": "q"}}
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(wrong))

    report = dlq_redrive.redrive(pipeline.client, pipeline.env, "analyzer", rate_per_s=100)

    assert (report.replayed, report.skipped) == (0, 2)
    details = sorted(o.detail for o in report.outcomes)
    assert "missing or of an unknown kind" in details[1]
    assert "someone.else/Other does not match the rule collections-local-ImageProcessedRule" \
        in details[0]
    assert depth(pipeline, "analyzer") == 2
    unreadable = next(e for e in dlq.peek(sqs, pipeline.env, "analyzer")
                      if e.format == dlq_records.UNREADABLE)
    assert unreadable.error == "the dead letter's body is not JSON"


def test_a_replay_that_fails_again_is_not_replayed_in_a_loop(pipeline):
    """On a running local cloud a replayed event may fail again at once and land back in the
    queue: the redrive leaves it for next time instead of replaying it forever."""
    fail_uploads(pipeline, ["again"])
    sqs = pipeline.client("sqs")

    def replay_and_fail_again(failed: dlq_records.FailedEvent) -> str:
        time.sleep(0.01)
        sqs.send_message(QueueUrl=pipeline.dlq_urls["processor"],
                         MessageBody=json.dumps({"requestContext": {"condition": "TerminalError"},
                                                 "requestPayload": failed.event}))
        return "somewhere"

    report = dlq_redrive.redrive(pipeline.client, pipeline.env, "processor",
                         replay=replay_and_fail_again, include_terminal=True,
                         rate_per_s=100)
    assert report.replayed == 1
    assert depth(pipeline, "processor") == 1


def test_on_a_running_dispatcher_failures_are_parked_then_redriven_to_completion(
        pipeline, db, monkeypatch):
    """The local cloud's dispatcher: a handler that keeps raising is retried, then parked as
    RetriesExhausted; a terminal failure is parked at once. Once fixed, a redrive replays both
    and the dispatcher carries them through to their embeddings."""
    from collections_ops.localcloud.lambda_service.dispatcher import Dispatcher
    from collections_ops.localcloud.lambda_service.retry_policy import DispatchPolicy

    monkeypatch.setenv("THUMBNAIL_SIZE", "big")  # the processor raises: retried, then parked
    dispatcher = Dispatcher(pipeline.session, pipeline.env, pipeline.queue_urls,
                            pipeline.dlq_urls, DispatchPolicy(workers_per_function=2,
                                                              max_retries=1,
                                                              retry_delays_s=(0,)))
    dispatcher.start()
    try:
        for n in range(3):
            pipeline.upload(f"user123/run {n}.jpg", images.photo(seed=n))
        _wait(lambda: depth(pipeline, "processor") == 3, "3 parked in the processor's DLQ")
        parked = dlq.peek(pipeline.client("sqs"), pipeline.env, "processor")
        assert {(f.condition, f.attempts, f.error_type) for f in parked} == {
            ("RetriesExhausted", 2, "ValueError")}
        assert sorted(f.item_id for f in parked) == ["run 0", "run 1", "run 2"]

        monkeypatch.setenv("THUMBNAIL_SIZE", "512")
        monkeypatch.setenv("ANALYZER_PROVIDER", "no-such-provider")  # terminal: parked at once
        report = dlq_redrive.redrive(pipeline.client, pipeline.env, "processor", rate_per_s=50)
        assert (report.replayed, report.failed) == (3, 0)
        _wait(lambda: depth(pipeline, "analyzer") == 3, "3 parked in the analyzer's DLQ")
        assert depth(pipeline, "processor") == 0

        monkeypatch.setenv("ANALYZER_PROVIDER", "local")
        report = dlq_redrive.redrive(pipeline.client, pipeline.env, "analyzer", rate_per_s=50)
        assert (report.replayed, report.failed) == (3, 0)
        _wait(lambda: db.execute(
            "SELECT count(*) FROM embeddings WHERE user_id = 'user123'").fetchone()[0] == 3,
            "3 embeddings")
        assert all(depth(pipeline, key) == 0 for key in ("processor", "analyzer", "embedder"))
    finally:
        dispatcher.stop()
    assert dispatcher.invocations >= 3 * 2 + 3 + 3 + 3 + 3


def test_the_number_of_workers_comes_from_the_environment():
    from collections_ops.localcloud.lambda_service.retry_policy import DispatchPolicy
    from collections_ops.pipeline import function

    processor, analyzer = function("processor"), function("analyzer")
    assert DispatchPolicy.from_environ({}).workers_for(processor) == 3
    assert DispatchPolicy.from_environ({"COLLECTIONS_LOCAL_WORKERS": "5"}).workers_for(
        analyzer) == 5
    mixed = DispatchPolicy.from_environ({"COLLECTIONS_LOCAL_WORKERS": "2, analyzer=6"})
    assert (mixed.workers_for(processor), mixed.workers_for(analyzer)) == (2, 6)
    bad = DispatchPolicy.from_environ({"COLLECTIONS_LOCAL_WORKERS": "thumbnailer=9"})
    assert bad.workers_for(processor) == 3  # ignored, with a warning


# --------------------------------------------------------------------------- AWS replays


@pytest.fixture
def fake_lambda() -> Iterator[FakeLambda]:
    fake = FakeLambda(environment("dev")).start()
    yield fake
    fake.stop()


def _dev_clients(pipeline: Any, fake: FakeLambda) -> dict[str, Any]:
    """moto's SQS and EventBridge, and the real Lambda client reaching the fake Invoke API."""
    return {"sqs": pipeline.client("sqs"), "events": pipeline.client("events"),
            "lambda": pipeline.session.client("lambda", endpoint_url=fake.url)}


def test_on_aws_each_dead_letter_is_replayed_by_an_asynchronous_invoke_of_live(
        pipeline, fake_lambda):
    # GIVEN dev's processor and embedder dead-letter queues, with an S3 event that exhausted
    # Lambda's retries and an AnalysisComplete event its rule could not deliver
    dev = environment("dev")
    clients = _dev_clients(pipeline, fake_lambda)
    sqs = clients["sqs"]
    processor_dlq = sqs.create_queue(QueueName="collections-dev-ImageProcessorLambda-dlq")
    embedder_dlq = sqs.create_queue(QueueName="collections-dev-EmbedderLambda-dlq")
    pipeline.upload("user123/x.jpg", CORRUPT)
    [s3_event] = pipeline.s3_events()
    sqs.send_message(QueueUrl=processor_dlq["QueueUrl"], MessageBody=json.dumps(
        {"requestContext": {"condition": "RetriesExhausted"}, "requestPayload": s3_event,
         "responsePayload": {"errorType": "RetryableError", "errorMessage": "db down"}}))
    analysed = {"version": "0", "id": "e-1", "source": "collections.analyzer",
                "detail-type": "AnalysisComplete", "account": "123456789012",
                "region": "us-east-1", "time": "2026-01-01T00:00:00Z", "resources": [],
                "detail": {"item_id": "i", "user_id": "u", "analysis_id": "4"}}
    sqs.send_message(QueueUrl=embedder_dlq["QueueUrl"], MessageBody=json.dumps(analysed),
                     MessageAttributes={"ERROR_CODE": {"DataType": "String",
                                                       "StringValue": "THROTTLING"}})

    # WHEN both are redriven
    reports = [dlq_redrive.redrive(clients.__getitem__, dev, key, rate_per_s=100)
               for key in ("processor", "embedder")]

    # THEN each was invoked once, asynchronously, on the alias the triggers invoke, with the
    # event as its trigger delivered it -- the EventBridge one not put back on the bus
    assert [(r.replayed, r.failed) for r in reports] == [(1, 0), (1, 0)]
    assert [(i.function_name, i.qualifier, i.invocation_type, i.payload)
            for i in fake_lambda.invocations] == [
        ("collections-dev-ImageProcessorLambda", "live", "Event", s3_event),
        ("collections-dev-EmbedderLambda", "live", "Event", analysed)]
    assert [r.outcomes[0].target for r in reports] == [
        "function collections-dev-ImageProcessorLambda:live (asynchronous invoke)",
        "function collections-dev-EmbedderLambda:live (asynchronous invoke)"]
    # AND the dead letters are gone, only now that Lambda accepted the replays
    assert [dlq.list_queues(sqs, dev)[n].depth for n in (0, 2)] == [0, 0]


def test_on_aws_an_invoke_lambda_refuses_keeps_the_dead_letter(pipeline):
    # GIVEN an embedder that has no `live` alias (never published)
    dev = environment("dev")
    fake = FakeLambda(dev, qualifiers=("$LATEST",)).start()
    try:
        clients = _dev_clients(pipeline, fake)
        url = clients["sqs"].create_queue(
            QueueName="collections-dev-EmbedderLambda-dlq")["QueueUrl"]
        event = {"source": "collections.analyzer", "detail-type": "AnalysisComplete",
                 "detail": {"item_id": "i", "user_id": "u", "analysis_id": "4"}}
        clients["sqs"].send_message(
            QueueUrl=url, MessageBody=json.dumps(event), MessageAttributes={
                "ERROR_CODE": {"DataType": "String", "StringValue": "THROTTLING"}})
        # WHEN it is redriven THEN the replay fails by name, and nothing ran $LATEST instead
        report = dlq_redrive.redrive(clients.__getitem__, dev, "embedder", rate_per_s=100)
    finally:
        fake.stop()
    assert (report.replayed, report.failed) == (0, 1)
    assert "collections-dev-EmbedderLambda:live" in report.outcomes[0].detail
    assert fake.invocations == []
    [kept] = dlq.peek(clients["sqs"], dev, "embedder")
    assert (kept.stage, kept.item_id, kept.condition) == ("embedding", "i", "THROTTLING")


def test_an_undeployed_environment_and_an_unknown_function_are_clear_errors(pipeline):
    from collections_ops import errors

    with pytest.raises(errors.NotReady, match="collections-prod-AnalyzerLambda-dlq does not"):
        dlq.peek(pipeline.client("sqs"), environment("prod"), "analyzer")
    with pytest.raises(errors.UsageError, match="unknown function 'thumbnailer'"):
        dlq.peek(pipeline.client("sqs"), pipeline.env, "thumbnailer")
    assert all(not q.exists for q in dlq.list_queues(pipeline.client("sqs"),
                                                      environment("prod")))


# --------------------------------------------------------------------------- the token bucket


def test_the_token_bucket_allows_a_burst_then_the_rate():
    clock = FakeClock()
    bucket = dlq_redrive.TokenBucket(4, burst=2, clock=clock, sleep=clock.sleep)
    times = []
    for _ in range(6):
        bucket.acquire()
        times.append(clock())
    assert times == pytest.approx([0, 0, 0.25, 0.5, 0.75, 1.0])
