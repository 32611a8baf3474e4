"""The analyzer and embedder with their real providers' SDKs, pointed at fake provider servers
on 127.0.0.1, inside the provisioned pipeline (moto + PostgreSQL)."""

from __future__ import annotations

import copy
from functools import partial
from typing import Any

import pytest

from tests import images
from tests.e2e.cli import wait_for
from tests.fakes.providers import (
    VALID_ANALYSIS,
    FakeProviders,
    invalid_analysis,
    ok,
    overloaded,
    point_pipeline_at,
    rate_limited,
)

_wait = partial(wait_for, timeout=20, interval=0.02)

CANARY_ANTHROPIC = "sk-ant-canary-7f3e9a1b2c4d5e6f"
CANARY_VOYAGE = "pa-canary-0a1b2c3d4e5f6789"


@pytest.fixture
def providers(pipeline, monkeypatch: pytest.MonkeyPatch) -> Any:
    ssm = pipeline.client("ssm")
    ssm.put_parameter(Name="/collections/ANTHROPIC_API_KEY", Value=CANARY_ANTHROPIC,
                      Type="SecureString", Overwrite=True)
    ssm.put_parameter(Name="/collections/VOYAGE_API_KEY", Value=CANARY_VOYAGE,
                      Type="SecureString", Overwrite=True)
    with FakeProviders() as fake:
        point_pipeline_at(fake, monkeypatch)
        yield fake


def analyzed_rows(db: Any) -> int:
    return int(db.execute("SELECT count(*) FROM analyses").fetchone()[0])


def all_log_text(results: dict[str, Any]) -> str:
    return "\n".join(msg for r in results.values() for _, msg in r.log_events)


def test_real_providers_store_the_analysis_and_a_voyage_embedding(pipeline, db, providers):
    results = pipeline.run_to_end("user123/kayak.jpg", images.photo(2400, 1600))

    assert all(r.ok for r in results.values()), results
    row = db.execute("SELECT category, summary, provider, model FROM analyses"
                     " WHERE item_id = 'kayak'").fetchone()
    assert row == ("photo", "A red kayak on a calm lake at sunrise.", "anthropic",
                   "claude-sonnet-4-6")
    emb = db.execute("SELECT embedding_model, embedding_dimensions, vector_dims(embedding)"
                     " FROM embeddings WHERE item_id = 'kayak'").fetchone()
    assert emb == ("voyage-3.5", 1024, 1024)
    sent = providers.messages.last.body
    image = sent["messages"][0]["content"][0]["source"]
    assert image["media_type"] == "image/jpeg"
    assert sent["tool_choice"] == {"type": "tool", "name": "record_analysis"}
    # Downscaled to what the model accepts before sending.
    import base64
    import io

    from PIL import Image
    with Image.open(io.BytesIO(base64.b64decode(image["data"]))) as im:
        assert max(im.size) <= 1568
    assert providers.embeddings.last.body["truncation"] is False
    assert providers.messages.last.api_key == CANARY_ANTHROPIC


def test_throttling_and_overload_are_retried_within_the_invocation(pipeline, db, providers):
    providers.messages.script(rate_limited(retry_after=0.2), overloaded())
    results = pipeline.run_to_end("user123/busy.jpg", images.photo())
    assert results["analyzer"].ok and results["analyzer"].result["status"] == "analyzed"
    assert len(providers.messages.requests) == 3
    assert analyzed_rows(db) == 1


def test_throttling_beyond_the_time_budget_is_left_to_lambdas_retry(pipeline, db, providers):
    providers.messages.script(rate_limited(retry_after=600))
    pipeline.upload("user123/slow.jpg", images.photo())
    for event in pipeline.s3_events():
        assert pipeline.invoke("processor", event).ok
    [event] = pipeline.receive("analyzer")
    result = pipeline.invoke("analyzer", event)
    assert not result.ok and result.error_type == "RetryableError"
    assert analyzed_rows(db) == 0
    assert pipeline.receive("analyzer", dlq=True, wait=0) == []


def test_a_malformed_analysis_is_rejected_without_writing(pipeline, db, providers):
    providers.messages.script(invalid_analysis())
    results = pipeline.run_to_end("user123/odd.jpg", images.photo())
    assert results["analyzer"].result["status"] == "failed"
    assert "analysis" in results["analyzer"].result["reason"]
    assert analyzed_rows(db) == 0
    assert "embedder" not in results
    [dead] = pipeline.receive("analyzer", dlq=True)
    assert dead["requestPayload"]["detail"]["item_id"] == "odd"


def test_no_secret_value_appears_in_any_log_line(pipeline, db, providers):
    providers.messages.script(rate_limited(retry_after=0.1))
    results = pipeline.run_to_end("user123/secret.jpg", images.photo())
    assert all(r.ok for r in results.values())
    text = all_log_text(results)
    assert "RequestId" in text and "Embedding stored in pgvector" in text
    for secret in (CANARY_ANTHROPIC, CANARY_VOYAGE, "canary"):
        assert secret not in text


def test_a_missing_provider_key_is_a_clear_configuration_error(pipeline, db, providers):
    pipeline.client("ssm").delete_parameter(Name="/collections/ANTHROPIC_API_KEY")
    results = pipeline.run_to_end("user123/nokey.jpg", images.photo())
    result = results["analyzer"]
    assert result.ok and result.result["status"] == "failed"
    assert result.result["reason"] == "SSM parameter /collections/ANTHROPIC_API_KEY does not exist"
    assert "collections secrets put ANTHROPIC_API_KEY" in all_log_text(results)


def test_a_key_put_after_a_failure_is_used_by_the_next_invocation(pipeline, db, providers):
    ssm = pipeline.client("ssm")
    ssm.delete_parameter(Name="/collections/ANTHROPIC_API_KEY")
    first = pipeline.run_to_end("user123/later.jpg", images.photo())
    assert first["analyzer"].result["status"] == "failed"
    ssm.put_parameter(Name="/collections/ANTHROPIC_API_KEY", Value=CANARY_ANTHROPIC,
                      Type="SecureString", Overwrite=True)
    second = pipeline.run_to_end("user123/later.jpg", images.photo(seed=5))
    assert second["analyzer"].result["status"] == "analyzed"


# --------------------------------------------------------------------------- reported usage


def _usage_rows(db: Any, item_id: str) -> tuple[Any, Any]:
    analysis = db.execute("SELECT count(*), max(input_tokens), max(output_tokens) FROM analyses"
                          " WHERE item_id = %s", (item_id,)).fetchone()
    embedded = db.execute("SELECT count(*), max(embedding_provider), max(input_tokens)"
                          " FROM embeddings WHERE item_id = %s", (item_id,)).fetchone()
    return analysis, embedded


def test_the_providers_reported_usage_is_stored_with_each_row(pipeline, db, providers):
    results = pipeline.run_to_end("user123/counted.jpg", images.photo(2400, 1600))
    assert all(r.ok for r in results.values()), results

    reported = providers.messages.last.answered["usage"]
    embedded = providers.embeddings.last.answered["usage"]
    # The fake counts like the API: the 1568 x 1045 image alone is ~2,185 tokens.
    assert reported["input_tokens"] > 2185 and reported["output_tokens"] > 20
    assert _usage_rows(db, "counted") == (
        (1, reported["input_tokens"], reported["output_tokens"]),
        (1, "voyage", embedded["total_tokens"]))
    analyzed = [f for _, f in _log_fields(results["analyzer"]) if f.get("stage") == "analyzed"]
    assert analyzed[0]["input_tokens"] == reported["input_tokens"]


def test_a_retried_call_stores_the_usage_of_the_call_that_produced_the_row(
        pipeline, db, providers):
    # GIVEN a first analysis that fails after the call (overloaded), then succeeds
    providers.messages.script(overloaded(), ok(usage={"input_tokens": 1111,
                                                      "output_tokens": 222}))
    providers.embeddings.script(ok(usage={"total_tokens": 33}))
    pipeline.run_to_end("user123/again.jpg", images.photo())
    assert _usage_rows(db, "again") == ((1, 1111, 222), (1, "voyage", 33))

    # WHEN the same object is uploaded again with new content (a replay through every stage)
    providers.messages.script(ok({**VALID_ANALYSIS, "summary": "The same lake at dusk."},
                                 usage={"input_tokens": 1500, "output_tokens": 300}))
    providers.embeddings.script(ok(usage={"total_tokens": 44}))
    results = pipeline.run_to_end("user123/again.jpg", images.photo(seed=9))
    assert results["embedder"].result["status"] == "embedded", results

    # THEN each row holds the latest call's figures, once: never a sum of the two
    assert _usage_rows(db, "again") == ((1, 1500, 300), (1, "voyage", 44))


def test_a_redelivered_event_costs_no_call_and_keeps_the_stored_usage(pipeline, db, providers):
    providers.messages.script(ok(usage={"input_tokens": 900, "output_tokens": 90}))
    pipeline.upload("user123/twice.jpg", images.photo())
    [s3_event] = pipeline.s3_events()
    assert pipeline.invoke("processor", s3_event).ok
    [event] = pipeline.receive("analyzer")
    assert pipeline.invoke("analyzer", event).result["status"] == "analyzed"
    calls = len(providers.messages.requests)
    assert pipeline.invoke("analyzer", event).result["status"] == "duplicate"
    assert len(providers.messages.requests) == calls
    assert _usage_rows(db, "twice")[0] == (1, 900, 90)


def _with_sequencer(s3_event: dict[str, Any], sequencer: str) -> dict[str, Any]:
    out = copy.deepcopy(s3_event)
    out["Records"][0]["s3"]["object"]["sequencer"] = sequencer
    return out


def _drive(pipeline, s3_event: dict[str, Any]) -> dict[str, Any]:
    results = {"processor": pipeline.invoke("processor", s3_event)}
    for event in pipeline.receive("analyzer"):
        results["analyzer"] = pipeline.invoke("analyzer", event)
    for event in pipeline.receive("embedder"):
        results["embedder"] = pipeline.invoke("embedder", event)
    return results


def test_one_object_notified_twice_under_a_newer_sequencer_costs_no_second_call(
        pipeline, db, providers):
    # GIVEN a photo analysed and embedded by the real SDKs
    pipeline.upload("user123/big.jpg", images.photo(seed=3))
    [s3_event] = pipeline.s3_events()
    first = _drive(pipeline, _with_sequencer(s3_event, "0062D1A2B3C4D5E6F0"))
    assert first["analyzer"].result["status"] == "analyzed", first
    [(analysis_id, etag)] = db.execute("SELECT id, source_etag FROM analyses").fetchall()
    calls, embeds = len(providers.messages.requests), len(providers.embeddings.requests)

    # WHEN a second notification of the same object (same ETag) arrives with a newer sequencer,
    # as a duplicated multipart-upload notification or an upload of the same bytes does
    second = _drive(pipeline, _with_sequencer(s3_event, "0062D1A2B3C4D5E6F7"))

    # THEN the processor takes the newer version, and the analyzer and embedder pay nothing
    [processed] = second["processor"].result["results"]
    assert processed["status"] == "processed"
    assert second["analyzer"].result == {"status": "duplicate", "analysis_id": analysis_id}
    assert second["embedder"].result["status"] == "duplicate"
    assert len(providers.messages.requests) == calls
    assert len(providers.embeddings.requests) == embeds
    # one analysis, now recorded as of the row's version (reconcile does not call it stale)
    item_sequencer = db.execute("SELECT sequencer FROM items").fetchone()[0]
    assert item_sequencer.endswith("0062D1A2B3C4D5E6F7")
    assert db.execute("SELECT id, source_etag, source_sequencer FROM analyses").fetchall() == [
        (analysis_id, etag, item_sequencer)]


def test_two_deliveries_at_the_same_moment_make_one_model_call(pipeline, db, providers,
                                                               migrated_db):
    import threading

    import psycopg

    # GIVEN an item's ImageProcessed event, and a model call the test holds open
    pipeline.upload("user123/twin.jpg", images.photo(seed=6))
    [s3_event] = pipeline.s3_events()
    assert pipeline.invoke("processor", s3_event).ok
    [event] = pipeline.receive("analyzer")
    held = threading.Event()
    providers.messages.script(ok(gate=held))
    results: dict[str, Any] = {}

    def deliver(name: str) -> None:  # each thread is a container with its own connection
        results[name] = pipeline.invoke("analyzer", event)

    def waiting_for_the_lock() -> int:
        with psycopg.connect(migrated_db) as conn:
            return int(conn.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                                    " AND NOT granted").fetchone()[0])

    first = threading.Thread(target=deliver, args=("first",))
    first.start()
    _wait(lambda: len(providers.messages.requests) == 1, "the first model call")
    # WHEN the same event is delivered again while the first call is in flight
    second = threading.Thread(target=deliver, args=("second",))
    second.start()
    _wait(lambda: waiting_for_the_lock() or len(providers.messages.requests) > 1,
          "the second delivery to wait or to call the model")
    held.set()
    first.join(timeout=60)
    second.join(timeout=60)

    # THEN one model call, one analysis; the second delivery announces the first's analysis
    assert len(providers.messages.requests) == 1
    assert results["first"].result["status"] == "analyzed", results
    assert results["second"].result == {"status": "duplicate",
                                        "analysis_id": results["first"].result["analysis_id"]}
    assert analyzed_rows(db) == 1
    assert len(pipeline.receive("embedder")) == 2  # both announced: the embedder dedupes


def test_new_bytes_under_the_same_key_are_analysed_again(pipeline, db, providers):
    pipeline.run_to_end("user123/changed.jpg", images.photo(seed=3))
    calls = len(providers.messages.requests)
    again = pipeline.run_to_end("user123/changed.jpg", images.photo(seed=4))
    assert again["analyzer"].result["status"] == "analyzed", again
    assert len(providers.messages.requests) == calls + 1
    assert analyzed_rows(db) == 1


@pytest.mark.parametrize("usage", [
    {"input_tokens": -5, "output_tokens": "many"},
    {"input_tokens": True, "output_tokens": 10**12},
])
def test_usage_that_is_not_a_count_is_stored_as_unknown(pipeline, db, providers, usage):
    providers.messages.script(ok(usage=usage))
    results = pipeline.run_to_end("user123/odd-usage.jpg", images.photo())
    assert results["analyzer"].result["status"] == "analyzed", results
    assert _usage_rows(db, "odd-usage")[0] == (1, None, None)


def test_the_local_providers_report_no_usage(pipeline, db):
    results = pipeline.run_to_end("user123/offline.jpg", images.photo())
    assert all(r.ok for r in results.values()), results
    assert _usage_rows(db, "offline") == ((1, None, None), (1, "local", None))


def _log_fields(result: Any) -> list[tuple[str, dict[str, Any]]]:
    import json

    out = []
    for _, message in result.log_events:
        try:
            fields = json.loads(message)
        except ValueError:
            continue
        if isinstance(fields, dict):
            out.append((message, fields))
    return out
