"""The three handlers against moto and a real PostgreSQL with pgvector, driven with the events
that moto's S3 notifications and EventBridge rules actually deliver."""

from __future__ import annotations

import json
import threading
from typing import Any
from urllib.parse import unquote_plus

import pytest

from tests import images


def counts(db: Any, user_id: str, item_id: str) -> tuple[int, int, int]:
    return tuple(  # type: ignore[return-value]
        db.execute(f"SELECT count(*) FROM {table} WHERE user_id = %s AND {col} = %s",
                   (user_id, item_id)).fetchone()[0]
        for table, col in (("items", "id"), ("analyses", "item_id"),
                           ("embeddings", "item_id")))


def test_an_upload_flows_through_all_three_handlers(pipeline, db):
    results = pipeline.run_to_end("user123/test-image.jpg", images.photo(1600, 1200))

    assert all(r.ok for r in results.values()), results
    assert db.execute("SELECT id, user_id, width, height FROM items WHERE id = 'test-image'"
                      ).fetchall() == [("test-image", "user123", 1600, 1200)]
    analysis = db.execute("SELECT id, item_id, category, summary FROM analyses"
                          " WHERE item_id = 'test-image'").fetchall()
    assert len(analysis) == 1 and analysis[0][2] and analysis[0][3]
    emb = db.execute("SELECT id, item_id, embedding_model, embedding_dimensions,"
                     " vector_dims(embedding) FROM embeddings WHERE item_id = 'test-image'"
                     ).fetchall()
    # the local cloud's offline embedding: multilingual-e5-small, 384 dimensions
    assert emb == [(1, "test-image", "multilingual-e5-small-q4", 384, 384)]
    thumb = pipeline.client("s3").get_object(Bucket=pipeline.thumbnails_bucket,
                                             Key="user123/test-image.jpg")
    from PIL import Image
    with Image.open(thumb["Body"]) as im:
        assert max(im.size) == 512 and im.format == "JPEG"


def test_every_invocation_logs_start_end_and_report(pipeline):
    results = pipeline.run_to_end("user123/a.jpg", images.photo())
    lines = [msg for _, msg in results["processor"].log_events]
    assert lines[0].startswith("START RequestId: ")
    assert lines[-2].startswith("END RequestId: ")
    assert lines[-1].startswith("REPORT RequestId: ") and "Max Memory Used" in lines[-1]
    body = [json.loads(m) for m in lines[1:-2]]
    assert {"S3 event received", "Thumbnail created", "EventBridge event published"} <= {
        b["message"] for b in body}


def test_the_same_s3_event_twice_gives_one_row_per_table(pipeline, db):
    pipeline.upload("user123/dup.jpg", images.photo())
    [event] = pipeline.s3_events()
    for _ in range(2):
        assert pipeline.invoke("processor", event).ok
    for e in pipeline.receive("analyzer"):
        assert pipeline.invoke("analyzer", e).ok
    for e in pipeline.receive("embedder"):
        assert pipeline.invoke("embedder", e).ok
    assert counts(db, "user123", "dup") == (1, 1, 1)


def test_the_same_s3_event_delivered_concurrently_gives_one_row_per_table(pipeline, db):
    pipeline.upload("user123/race.jpg", images.photo())
    [event] = pipeline.s3_events()

    def run(fn: str, ev: Any, out: list[Any]) -> None:
        out.append(pipeline.invoke(fn, ev))

    for stage, events in (("processor", [event, event, event]),):
        results: list[Any] = []
        threads = [threading.Thread(target=run, args=(stage, ev, results)) for ev in events]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(r.ok for r in results)
    analyzer_events = pipeline.receive("analyzer")
    assert len(analyzer_events) == 3
    results = []
    threads = [threading.Thread(target=run, args=("analyzer", ev, results))
               for ev in analyzer_events]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in results)
    embedder_events = pipeline.receive("embedder")
    results = []
    threads = [threading.Thread(target=run, args=("embedder", ev, results))
               for ev in embedder_events]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(r.ok for r in results)
    assert counts(db, "user123", "race") == (1, 1, 1)


@pytest.mark.parametrize(("key", "user", "item"), [
    ("user123/my holiday photo.jpg", "user123", "my holiday photo"),
    ("user123/a+b=c.jpg", "user123", "a+b=c"),
    ("user 9/café ünïcødé 写真.jpg", "user 9", "café ünïcødé 写真"),
])
def test_keys_with_spaces_plus_and_unicode_are_decoded(pipeline, db, key, user, item):
    results = pipeline.run_to_end(key, images.photo())
    assert all(r.ok for r in results.values())
    assert counts(db, user, item) == (1, 1, 1)
    assert db.execute("SELECT original_key FROM items WHERE user_id = %s", (user,)
                      ).fetchone() == (key,)


def test_two_users_with_the_same_file_name_do_not_overwrite_each_other(pipeline, db):
    pipeline.run_to_end("alice/test-image.jpg", images.photo(seed=1))
    pipeline.run_to_end("bob/test-image.jpg", images.photo(seed=2, width=640, height=640))
    rows = db.execute("SELECT user_id, width FROM items WHERE id = 'test-image' ORDER BY 1"
                      ).fetchall()
    assert rows == [("alice", 800), ("bob", 640)]
    assert db.execute("SELECT count(*) FROM embeddings WHERE item_id = 'test-image'"
                      ).fetchone() == (2,)


@pytest.mark.parametrize(("name", "body", "reason"), [
    ("corrupt", b"\xff\xd8\xff\xe0" + b"garbage" * 100, "unreadable image"),
    ("truncated", images.truncated(images.photo(1200, 900)), "corrupt or truncated"),
    ("zero-byte", b"", "empty"),
    ("not-an-image", b"%PDF-1.4\n1 0 obj\n<<>>\nendobj\n", "not an image"),
    ("bomb", images.bomb_png(), "bomb"),
])
def test_bad_uploads_fail_terminally_with_no_rows_and_no_retry(pipeline, db, name, body,
                                                               reason):
    pipeline.upload(f"user123/{name}.jpg", body)
    [event] = pipeline.s3_events()
    result = pipeline.invoke("processor", event)

    assert result.ok, "a terminal failure is handled, not raised (no retry loop)"
    assert result.result["status"] == "failed" and reason in result.result["reason"]
    assert counts(db, "user123", name) == (0, 0, 0)
    assert pipeline.receive("analyzer", wait=0) == []
    [dead] = pipeline.receive("processor", dlq=True)
    assert dead["requestContext"]["condition"] == "TerminalError"
    assert reason in dead["responsePayload"]["errorMessage"]
    raw_key = dead["requestPayload"]["Records"][0]["s3"]["object"]["key"]
    assert unquote_plus(raw_key) == f"user123/{name}.jpg"


def test_a_database_outage_is_retryable(pipeline, db):
    ssm = pipeline.client("ssm")
    ssm.put_parameter(Name="/collections/local/DATABASE_URL_PROCESSOR", Type="SecureString",
                      Overwrite=True, Value="postgresql://u:hunter2secret@127.0.0.1:1/none")
    pipeline.upload("user123/outage.jpg", images.photo())
    [event] = pipeline.s3_events()
    result = pipeline.invoke("processor", event)
    assert not result.ok and result.error_type == "RetryableError"
    assert "database unreachable" in result.error_message
    logs = "\n".join(m for _, m in result.log_events)
    assert "hunter2secret" not in logs
    assert pipeline.receive("processor", dlq=True, wait=0) == []


def test_put_events_partial_failure_raises(moto_endpoint):
    from collections_core import aws, state
    from collections_core.errors import RetryableError

    state.reset()
    with pytest.raises(RetryableError, match="publishing ImageProcessed failed"):
        # moto rejects an entry without a source with FailedEntryCount = 1
        aws.put_event(source="", detail_type="ImageProcessed", detail={"a": 1}, bus="default")


def test_the_guides_manual_event_is_refused_cleanly(pipeline, db):
    guide_event = {
        "version": "0", "id": "1", "source": "collections.imageprocessor",
        "detail-type": "ImageProcessed", "account": "123456789012", "time": "2026-01-01T00:00:00Z",
        "region": "us-east-1", "resources": [],
        "detail": {"item_id": "test", "user_id": "user123", "bucket": "test",
                   "original_key": "test.jpg"},
    }
    result = pipeline.invoke("analyzer", guide_event)
    # A terminal refusal: the bucket it names is not this environment's images bucket.
    assert result.ok and result.result["status"] == "failed"
    assert "refused: s3://test/test.jpg is not in this environment's images bucket" in \
        result.result["reason"]
    assert counts(db, "user123", "test") == (0, 0, 0)
    [parked] = pipeline.receive("analyzer", dlq=True, wait=0)
    assert parked["responsePayload"]["errorType"] == "ClaimRefused"


def test_a_malformed_event_goes_to_the_dead_letter_queue(pipeline, db):
    result = pipeline.invoke("analyzer", {"source": "collections.imageprocessor",
                                          "detail-type": "ImageProcessed",
                                          "detail": {"item_id": "x"}})
    assert result.ok and "missing user_id, bucket, original_key" in result.result["reason"]
    assert len(pipeline.receive("analyzer", dlq=True, wait=0)) == 1


def test_thumbnails_never_retrigger_the_processor(pipeline):
    pipeline.run_to_end("user123/loop.jpg", images.photo())
    assert pipeline.s3_events() == []


def test_published_events_carry_the_invocations_trace_header(pipeline, monkeypatch):
    """EventBridge passes X-Ray context to its targets only if the PutEvents entry carries it:
    the entries moto receives from the processor and the analyzer have `TraceHeader`."""
    from collections_core import aws

    trace = "Root=1-6751f3a1-0123456789abcdef01234567;Parent=53995c3f42cd8ad8;Sampled=1"
    monkeypatch.setenv("_X_AMZN_TRACE_ID", trace)
    sent: list[dict[str, Any]] = []

    def record(request: Any, **_: Any) -> None:  # the request as it goes on the wire
        sent.extend(json.loads(request.body)["Entries"])

    aws.client("events").meta.events.register("before-send.events.PutEvents", record)
    results = pipeline.run_to_end("user123/traced.jpg", images.photo())

    assert all(r.ok for r in results.values()) and "embedder" in results
    assert [(e["DetailType"], e.get("TraceHeader")) for e in sent] == [
        ("ImageProcessed", trace), ("AnalysisComplete", trace)]


def test_without_a_trace_id_no_trace_header_is_sent(pipeline, monkeypatch):
    from collections_core import aws

    monkeypatch.delenv("_X_AMZN_TRACE_ID", raising=False)
    sent: list[dict[str, Any]] = []
    aws.client("events").meta.events.register(
        "before-send.events.PutEvents",
        lambda request, **_: sent.extend(json.loads(request.body)["Entries"]))
    pipeline.run_to_end("user123/untraced.jpg", images.photo())
    assert sent and all("TraceHeader" not in e for e in sent)
