"""`reconcile`, `replay` and `dlq redrive` on AWS, as an operator runs them: the dev environment
on moto (S3, SQS, SSM), its database reachable only through the operations function (the real
handler against the real PostgreSQL, behind a stand-in for Lambda's Invoke API), and every
re-drive an asynchronous invoke of the function's `live` alias -- the version its triggers
invoke -- with the event that trigger would deliver.

The stand-in records asynchronous invokes rather than running them (Lambda would run them
later, with its own retries): that the handlers accept these events is shown on the local
cloud, where the same events are delivered (tests/integration/test_reconcile.py,
tests/e2e/test_cli_reconcile.py)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

import boto3

from collections_ops.pipeline import OPERATIONS, environment, function
from tests.e2e.cli import run
from tests.fakes.lambda_invoke import FakeLambda, Invocation

DEV = environment("dev")
ACCOUNT = "123456789012"
IMAGES, THUMBNAILS = DEV.images_bucket(ACCOUNT), DEV.thumbnails_bucket(ACCOUNT)
SEQ = "0" * 16 + "00000000000000A1"
VIA = f"operations function {OPERATIONS.function_name('dev')}"


def _half_done(url: str) -> int:
    """Three originals in dev's images bucket: `u/a.jpg` never processed, `u/b.jpg` processed
    but never analysed, `u/c.jpg` analysed but never embedded. Returns c's analysis id."""
    import psycopg

    s3 = boto3.client("s3", region_name="us-east-1")
    for bucket in (IMAGES, THUMBNAILS):
        s3.create_bucket(Bucket=bucket)
    for name in ("a", "b", "c"):
        s3.put_object(Bucket=IMAGES, Key=f"u/{name}.jpg", Body=b"\xff\xd8original")
    for name in ("b", "c"):
        s3.put_object(Bucket=THUMBNAILS, Key=f"u/{name}.jpg", Body=b"\xff\xd8thumb")
    with psycopg.connect(url, autocommit=True) as conn:
        from collections_core import migrate

        migrate.apply(conn)
        for name in ("b", "c"):
            conn.execute("INSERT INTO items (id, user_id, bucket, original_key,"
                         " thumbnail_bucket, thumbnail_key, etag, sequencer, correlation_id)"
                         " VALUES (%s, 'u', %s, %s, %s, %s, 'e', %s, %s)",
                         (name, IMAGES, f"u/{name}.jpg", THUMBNAILS, f"u/{name}.jpg", SEQ,
                          f"corr-{name}"))
        row = conn.execute(
            "INSERT INTO analyses (item_id, user_id, category, summary, provider, model,"
            " source_etag, source_sequencer, raw) VALUES ('c', 'u', 'photo', 'a cat',"
            " 'anthropic', 'claude-sonnet-4-6', 'e', %s, '{}') RETURNING id", (SEQ,)).fetchone()
    assert row is not None
    return int(row[0])


def _redrives(fake: FakeLambda) -> list[Invocation]:
    """The invokes of the pipeline's functions (not the operations function's queries)."""
    return [i for i in fake.invocations
            if i.function_name != OPERATIONS.function_name("dev")]


def _name(key: str) -> str:
    return function(key).function_name("dev")


def test_reconcile_fix_reads_through_the_operations_function_and_invokes_live(
        private_db: str, dev_cli_env: dict[str, str], fake_lambda: FakeLambda) -> None:
    analysis_id = _half_done(private_db)

    # WHEN reconcile looks THEN it reads through the operations function and says so
    found = run(dev_cli_env, "reconcile", "dev", "--min-age", "0", "-o", "json")
    assert found.returncode == 8, found.stdout + found.stderr
    report = json.loads(found.stdout)
    assert (report["route"], report["via"]) == ("operations", VIA)
    assert f"route: {VIA}" in found.stderr
    assert {k: v for k, v in report["counts"].items() if v} == {
        "object-without-item": 1, "item-without-analysis": 1, "analysis-without-embedding": 1}
    queried = [i for i in fake_lambda.invocations if i not in _redrives(fake_lambda)]
    assert {(i.invocation_type, i.payload["query"], i.payload["params"]["table"])
            for i in queried} == {("RequestResponse", "reconcile_rows", t)
                                  for t in ("items", "analyses", "embeddings")}
    assert _redrives(fake_lambda) == []  # looking re-drives nothing

    # WHEN --fix re-drives them (Lambda runs them later: nothing settles within --timeout 0)
    fixed = run(dev_cli_env, "reconcile", "dev", "--min-age", "0", "--fix", "--timeout", "0",
                "-o", "json")
    assert fixed.returncode == 8, fixed.stdout + fixed.stderr
    redrives = {r["stage"]: r for r in json.loads(fixed.stdout)["redrives"]}
    assert {s: (r["key"], r["target"]) for s, r in redrives.items()} == {
        "processor": ("u/a.jpg", f"function {_name('processor')}:live (asynchronous invoke)"),
        "analyzer": ("u/b.jpg", f"function {_name('analyzer')}:live (asynchronous invoke)"),
        "embedder": ("u/c.jpg", f"function {_name('embedder')}:live (asynchronous invoke)")}

    # THEN each stage's `live` alias was invoked exactly once, asynchronously
    sent = _redrives(fake_lambda)
    assert sorted((i.function_name, i.qualifier, i.invocation_type) for i in sent) == sorted(
        (_name(k), "live", "Event") for k in ("processor", "analyzer", "embedder"))
    by_function = {i.function_name: i.payload for i in sent}
    # the processor: an S3 ObjectCreated notification of the original, as S3 sends it
    [record] = by_function[_name("processor")]["Records"]
    assert (record["eventSource"], record["eventName"]) == ("aws:s3", "ObjectCreated:Put")
    assert record["s3"]["bucket"]["name"] == IMAGES
    assert unquote_plus(record["s3"]["object"]["key"]) == "u/a.jpg"
    # the analyzer and the embedder: the EventBridge events their rules deliver, from the rows
    _assert_eventbridge(by_function[_name("analyzer")], "collections.imageprocessor",
                        "ImageProcessed", {"item_id": "b", "user_id": "u", "bucket": IMAGES,
                                           "original_key": "u/b.jpg", "sequencer": SEQ,
                                           "thumbnail_bucket": THUMBNAILS,
                                           "thumbnail_key": "u/b.jpg",
                                           "correlation_id": "corr-b"})
    _assert_eventbridge(by_function[_name("embedder")], "collections.analyzer",
                        "AnalysisComplete", {"item_id": "c", "user_id": "u",
                                             "analysis_id": str(analysis_id),
                                             "category": "photo", "provider": "anthropic",
                                             "model": "claude-sonnet-4-6"})


def _assert_eventbridge(event: dict[str, Any], source: str, detail_type: str,
                        detail: dict[str, Any]) -> None:
    assert (event["source"], event["detail-type"]) == (source, detail_type)
    assert (event["account"], event["region"], event["version"]) == (ACCOUNT, "us-east-1", "0")
    assert event["id"] and event["time"].endswith("Z") and event["resources"] == []
    assert event["detail"] == detail


def test_replay_and_dlq_redrive_invoke_live_once(
        private_db: str, dev_cli_env: dict[str, str], fake_lambda: FakeLambda) -> None:
    _half_done(private_db)

    # WHEN one item is replayed from the embedder
    sent = run(dev_cli_env, "replay", "c", "-u", "u", "--from", "embedder", "-e", "dev",
               "-o", "json")
    assert sent.returncode == 0, sent.stdout + sent.stderr
    answer = json.loads(sent.stdout)
    assert (answer["route"], answer["target"]) == (
        "operations", f"function {_name('embedder')}:live (asynchronous invoke)")
    # THEN only the embedder's live alias was invoked, once, with an AnalysisComplete event
    [only] = _redrives(fake_lambda)
    assert (only.function_name, only.qualifier, only.invocation_type) == (
        _name("embedder"), "live", "Event")
    assert only.payload["detail-type"] == "AnalysisComplete"

    # GIVEN a dead letter of the processor: an S3 event whose retries were exhausted
    sqs = boto3.client("sqs", region_name="us-east-1")
    url = sqs.create_queue(QueueName=function("processor").dlq_name("dev"))["QueueUrl"]
    s3_event = {"Records": [{"eventSource": "aws:s3", "eventName": "ObjectCreated:Put",
                             "s3": {"bucket": {"name": IMAGES},
                                    "object": {"key": "u/a.jpg", "size": 17}}}]}
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
        {"requestContext": {"condition": "RetriesExhausted", "approximateInvokeCount": 3},
         "requestPayload": s3_event,
         "responsePayload": {"errorType": "RetryableError", "errorMessage": "db down"}}))
    # WHEN it is redriven THEN the processor's live alias gets that event, asynchronously
    redriven = run(dev_cli_env, "dlq", "redrive", "processor", "-e", "dev", "-o", "json")
    assert redriven.returncode == 0, redriven.stdout + redriven.stderr
    assert json.loads(redriven.stdout)["replayed"] == 1
    assert [(i.function_name, i.qualifier, i.invocation_type, i.payload)
            for i in _redrives(fake_lambda)[1:]] == [
        (_name("processor"), "live", "Event", s3_event)]
