"""At-least-once, out-of-order delivery and hostile inputs, against moto and PostgreSQL: no
row lost, none duplicated, nothing half-written, every refusal explained."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tests import images


def s3_event(pipeline, key: str, body: bytes) -> dict[str, Any]:
    pipeline.upload(key, body)
    [event] = pipeline.s3_events()
    return event


def with_sequencer(event: dict[str, Any], sequencer: str) -> dict[str, Any]:
    out = copy.deepcopy(event)
    out["Records"][0]["s3"]["object"]["sequencer"] = sequencer
    return out


def drain(pipeline) -> None:
    for event in pipeline.receive("analyzer", wait=0):
        assert pipeline.invoke("analyzer", event).ok
    for event in pipeline.receive("embedder", wait=0):
        assert pipeline.invoke("embedder", event).ok


def test_overwrites_arriving_out_of_order_keep_the_newest_version(pipeline, db):
    old = s3_event(pipeline, "user123/cat.jpg", images.photo(640, 480, seed=1))
    new = s3_event(pipeline, "user123/cat.jpg", images.photo(800, 600, seed=2))
    # S3 compares sequencers as hexadecimal numbers; the newer one arrives first.
    newer, older = with_sequencer(new, "0062D1A2B3C4D5E6F7"), with_sequencer(old, "005F")
    assert pipeline.invoke("processor", newer).result["results"][0]["status"] == "processed"
    stale = pipeline.invoke("processor", older).result["results"][0]
    assert stale["status"] == "stale"
    drain(pipeline)
    row = db.execute("SELECT width, sequencer FROM items WHERE id = 'cat'").fetchone()
    assert row[0] == 800
    assert db.execute("SELECT count(*) FROM analyses WHERE item_id = 'cat'").fetchone() == (1,)


def test_a_test_event_and_a_record_less_event_are_ignored(pipeline, db):
    for event in ({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "b"}, {}):
        result = pipeline.invoke("processor", event)
        assert result.ok and result.result["results"] == []
    assert db.execute("SELECT count(*) FROM items").fetchone() == (0,)


def test_an_object_deleted_before_processing_is_terminal_not_a_retry_loop(pipeline, db):
    event = s3_event(pipeline, "user123/gone.jpg", images.photo())
    pipeline.client("s3").delete_object(Bucket=pipeline.images_bucket, Key="user123/gone.jpg")
    result = pipeline.invoke("processor", event)
    assert result.ok and "no longer exists" in result.result["reason"]
    assert len(pipeline.receive("processor", dlq=True, wait=0)) == 1
    assert db.execute("SELECT count(*) FROM items").fetchone() == (0,)


def test_event_details_stay_far_below_eventbridges_limit(pipeline):
    long_name = "n" * 400
    pipeline.run_to_end(f"user123/{long_name}.jpg", images.photo())
    # the analyzer consumed it; look at what the processor published via a fresh upload
    pipeline.upload(f"user123/{long_name}.jpg", images.photo(seed=9))
    for event in pipeline.s3_events():
        pipeline.invoke("processor", event)
    [published] = pipeline.receive("analyzer")
    assert len(json.dumps(published["detail"]).encode()) < 8_000


def test_an_item_id_that_looks_like_sql_is_just_a_name(pipeline, db):
    name = "x'; DROP TABLE items; --"
    results = pipeline.run_to_end(f"user123/{name}.jpg", images.photo())
    assert all(r.ok for r in results.values())
    assert db.execute("SELECT id FROM items WHERE user_id = 'user123'").fetchall() == [(name,)]
    assert db.execute("SELECT count(*) FROM embeddings").fetchone() == (1,)


def test_heic_is_refused_clearly(pipeline, db):
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64
    event = s3_event(pipeline, "user123/phone.heic", heic)
    result = pipeline.invoke("processor", event)
    assert result.result["status"] == "failed"
    assert "not an image in an allowed format" in result.result["reason"]


def test_the_embedder_retries_while_the_analysis_is_not_visible(pipeline, db):
    # GIVEN an item whose analysis is not visible yet
    db.execute("INSERT INTO items (id, user_id, bucket, original_key) VALUES"
               " ('later', 'user123', %s, 'user123/later.jpg')", (pipeline.images_bucket,))
    early = {"source": "collections.analyzer", "detail-type": "AnalysisComplete",
             "detail": {"item_id": "later", "user_id": "user123", "analysis_id": "1"}}
    result = pipeline.invoke("embedder", early)
    assert not result.ok and result.error_type == "RetryableError"
    assert "not visible yet" in result.error_message
    assert pipeline.receive("embedder", dlq=True, wait=0) == []


def test_a_vector_whose_dimension_disagrees_with_its_record_is_refused(db):
    import psycopg

    db.execute("INSERT INTO items (id, user_id, bucket, original_key) VALUES ('v', 'u', 'b', 'k')")
    analysis = db.execute(
        "INSERT INTO analyses (item_id, user_id, category, summary, provider, model, raw)"
        " VALUES ('v', 'u', 'photo', 's', 'local', 'm', '{}') RETURNING id").fetchone()[0]
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute("INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model,"
                   " embedding_dimensions, embedding, content_hash)"
                   " VALUES ('v', 'u', %s, 'm', 1024, '[1,2,3]', 'h')", (analysis,))
    assert db.execute("SELECT count(*) FROM embeddings").fetchone() == (0,)


def _secret_parameters() -> str:
    from collections_ops import pipeline

    local = pipeline.environment("local")
    return pipeline.common_env(local, account=pipeline.LOCAL_ACCOUNT)["SECRET_PARAMETERS"]


def test_access_denied_on_a_secret_is_a_clear_configuration_error(monkeypatch):
    from botocore.exceptions import ClientError

    from collections_core import secrets, state
    from collections_core.errors import ConfigurationError

    class DeniedSSM:
        def get_parameters(self, **_: Any) -> Any:
            raise ClientError({"Error": {"Code": "AccessDeniedException",
                                         "Message": "not authorized"}}, "GetParameters")

    state.reset()
    monkeypatch.setenv("SECRET_PARAMETERS", _secret_parameters())
    monkeypatch.setattr("collections_core.aws.client", lambda service: DeniedSSM())
    with pytest.raises(ConfigurationError, match="access denied reading SSM parameters "
                       "/collections/local/ANTHROPIC_API_KEY, /collections/ANTHROPIC_API_KEY"
                       ) as info:
        secrets.get("ANTHROPIC_API_KEY")
    assert "kms:Decrypt" in (info.value.hint or "")


def test_an_absent_optional_secret_is_not_looked_up_on_every_invocation(monkeypatch):

    from collections_core import secrets, state

    calls: list[str] = []

    class CountingSSM:
        def get_parameters(self, Names: list[str], **_: Any) -> Any:
            calls.extend(Names)
            return {"Parameters": [], "InvalidParameters": Names}

    state.reset()
    monkeypatch.setenv("SECRET_PARAMETERS", _secret_parameters())
    monkeypatch.setattr("collections_core.aws.client", lambda service: CountingSSM())
    for _ in range(5):
        assert secrets.get("LANGSMITH_API_KEY", required=False) is None
    # one call, for the environment's override and the shared key
    assert calls == ["/collections/local/LANGSMITH_API_KEY", "/collections/LANGSMITH_API_KEY"]
    monkeypatch.setattr(secrets, "ABSENT_TTL_SECONDS", 0.0)
    secrets.get("LANGSMITH_API_KEY", required=False)
    assert len(calls) == 4, "looked up again once the short cache expires"
