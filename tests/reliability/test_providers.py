"""Provider faults inside the provisioned pipeline (moto + PostgreSQL), with the real SDKs
pointed at the fake provider server on 127.0.0.1: a spend cap, structured output cut off or
truncated, a hung provider against a function with little time left, and texts or vectors the
embedder must not store. Every case ends retryable or terminal, never with a partial row.

Throttling, overload, malformed analyses, canaries in logs and missing keys through the handlers
are in tests/integration/test_handlers_providers.py; the SDK-level cases (429 with and without
retry-after, 529, 5xx, 401, hangs, non-JSON bodies) in tests/unit/test_providers.py.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from tests import images
from tests.fakes.providers import (
    FakeProviders,
    Reply,
    bad_request,
    fake_embedding,
    hang,
    ok,
    point_pipeline_at,
)

pytestmark = pytest.mark.timeout(60)

CANARY_ANTHROPIC = "sk-ant-canary-reliability-5b6c7d8e"
CANARY_VOYAGE = "pa-canary-reliability-9f0e1d2c"
CANARY_OPENAI = "sk-proj-canary-reliability-3a4b5c6d"
SPEND_CAP_MESSAGES = (
    "Your credit balance is too low to access the Anthropic API. Please go to Plans & Billing "
    "to upgrade or purchase credits.",
    "You have reached your specified API usage limits. You will regain access on 2026-12-01 at "
    "00:00 UTC.",
)


@pytest.fixture
def providers(pipeline, monkeypatch: pytest.MonkeyPatch) -> Any:
    ssm = pipeline.client("ssm")
    for name, value in (("ANTHROPIC_API_KEY", CANARY_ANTHROPIC),
                        ("VOYAGE_API_KEY", CANARY_VOYAGE), ("OPENAI_API_KEY", CANARY_OPENAI)):
        ssm.put_parameter(Name=f"/collections/{name}", Value=value, Type="SecureString",
                          Overwrite=True)
    with FakeProviders() as fake:
        for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                    "all_proxy"):
            monkeypatch.delenv(var, raising=False)
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
        point_pipeline_at(fake, monkeypatch)
        yield fake


def rows(db: Any, table: str) -> int:
    return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def analyzer_event(pipeline: Any, key: str) -> dict[str, Any]:
    """Upload `key` and run the processor; return the ImageProcessed event it published."""
    pipeline.upload(key, images.photo())
    [s3_event] = pipeline.s3_events()
    assert pipeline.invoke("processor", s3_event).ok
    [event] = pipeline.receive("analyzer")
    return event


def call_with_time_left(pipeline: Any, key: str, event: Any, seconds: int) -> tuple[Any, float,
                                                                                      float]:
    """Call a handler as Lambda would with a context of `seconds`; return what it raised or
    returned, the wall time it took and the time the context had left at the end."""
    from collections_ops.localcloud.lambda_service import lambda_runtime
    from collections_ops.pipeline import function

    fn = function(key)
    handler = lambda_runtime.load_handler(fn)
    context = lambda_runtime.LambdaContext(function_name=fn.function_name(pipeline.env.name),
                                           memory_limit_in_mb=pipeline.env.memory(fn),
                                           timeout_s=seconds)
    started = time.monotonic()
    try:
        outcome: Any = handler(event, context)
    except Exception as exc:
        outcome = exc
    return outcome, time.monotonic() - started, context.get_remaining_time_in_millis() / 1000


def parked(pipeline: Any, key: str) -> list[dict[str, Any]]:
    return pipeline.receive(key, dlq=True, wait=0)


# --------------------------------------------------------------------------- spend cap


@pytest.mark.parametrize("message", SPEND_CAP_MESSAGES, ids=["credit-balance", "usage-limit"])
def test_a_spend_cap_refusal_is_terminal_once_and_writes_no_analysis(pipeline, db, providers,
                                                                     message):
    providers.messages.script(bad_request(message))
    event = analyzer_event(pipeline, "user123/capped.jpg")

    result = pipeline.invoke("analyzer", event)

    assert result.ok and result.result["status"] == "failed", "terminal: parked, not raised"
    assert "anthropic refused the request (400)" in result.result["reason"]
    assert message[:40] in result.result["reason"], "the operator sees the provider's words"
    assert len(providers.messages.requests) == 1, "a refusal is not retried"
    assert rows(db, "analyses") == 0
    assert pipeline.receive("embedder", wait=0) == []
    [dead] = parked(pipeline, "analyzer")
    assert dead["requestContext"]["condition"] == "TerminalError"
    assert message[:40] in dead["responsePayload"]["errorMessage"]
    assert CANARY_ANTHROPIC not in json.dumps(dead)
    assert CANARY_ANTHROPIC not in "\n".join(m for _, m in result.log_events)


def test_an_exhausted_openai_quota_is_retried_within_the_time_left_then_retryable(
        pipeline, db, providers, monkeypatch):
    """OpenAI reports an exhausted quota as a 429 (`insufficient_quota`): it is retried like
    throttling, inside the function's time, then left to Lambda's retries -- no row."""
    monkeypatch.setenv("ANALYZER_PROVIDER", "openai")
    monkeypatch.setenv("ANALYZER_MODEL", "gpt-4o")
    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "1")
    quota = Reply(status=429, json_body={"error": {
        "message": "You exceeded your current quota, please check your plan and billing details.",
        "type": "insufficient_quota", "param": None, "code": "insufficient_quota"}})
    providers.chat.script(*[quota] * 4)
    event = analyzer_event(pipeline, "user123/quota.jpg")

    outcome, elapsed, left = call_with_time_left(pipeline, "analyzer", event, 10)

    assert type(outcome).__name__ == "RetryableError" and "429" in outcome.reason
    assert len(providers.chat.requests) >= 2
    assert elapsed < 10 and left > 0, "gave up before the function would have timed out"
    assert rows(db, "analyses") == 0
    assert parked(pipeline, "analyzer") == []


# --------------------------------------------------------------------------- cut-off output


def test_structured_output_cut_off_at_max_tokens_is_terminal_with_no_row(pipeline, db,
                                                                         providers):
    providers.messages.script(ok(stop_reason="max_tokens"))
    event = analyzer_event(pipeline, "user123/cutoff.jpg")

    result = pipeline.invoke("analyzer", event)

    assert result.ok and result.result["status"] == "failed"
    assert "cut off (max_tokens)" in result.result["reason"]
    assert len(providers.messages.requests) == 1
    assert rows(db, "analyses") == 0
    assert pipeline.receive("embedder", wait=0) == []
    [dead] = parked(pipeline, "analyzer")
    assert "max_tokens" in dead["responsePayload"]["errorMessage"]


def test_a_response_body_truncated_mid_json_is_retried_and_stored_once(pipeline, db,
                                                                       providers):
    whole = json.dumps({"id": "msg_cut", "type": "message", "role": "assistant",
                        "model": "claude-sonnet-4-6", "content": [{
                            "type": "tool_use", "id": "toolu_cut", "name": "record_analysis",
                            "input": {"category": "photo", "summary": "A red kayak"}}],
                        "stop_reason": "tool_use"}).encode()
    providers.messages.script(Reply(raw_body=whole[: len(whole) // 2]), ok())
    event = analyzer_event(pipeline, "user123/halfbody.jpg")

    result = pipeline.invoke("analyzer", event)

    assert result.ok and result.result["status"] == "analyzed", result
    assert len(providers.messages.requests) == 2
    assert db.execute("SELECT summary FROM analyses").fetchall() == [
        ("A red kayak on a calm lake at sunrise.",)], "only the whole answer is stored"
    assert len(pipeline.receive("embedder")) == 1


# --------------------------------------------------------------------------- hung provider


@pytest.mark.parametrize("provider_timeout", ["0.5", "60"])
def test_a_hung_analysis_provider_gives_up_within_the_functions_time(
        pipeline, db, providers, monkeypatch, provider_timeout):
    """With 6 s left, a provider that never answers costs at most the time left minus the
    safety margin -- even when PROVIDER_TIMEOUT_S alone (60 s) would outlive the function."""
    monkeypatch.setenv("PROVIDER_TIMEOUT_S", provider_timeout)
    providers.messages.script(*[hang(30)] * 4)
    event = analyzer_event(pipeline, "user123/hung.jpg")

    outcome, elapsed, left = call_with_time_left(pipeline, "analyzer", event, 6)

    assert type(outcome).__name__ == "RetryableError", outcome
    assert "APITimeoutError" in outcome.reason
    assert elapsed < 6 and left >= 2.0, f"took {elapsed:.1f} s of 6, left {left:.1f} s"
    assert rows(db, "analyses") == 0
    assert parked(pipeline, "analyzer") == [], "retryable: left to Lambda, not parked"
    assert pipeline.receive("embedder", wait=0) == []


def test_a_hung_embedding_provider_gives_up_within_the_functions_time(pipeline, db,
                                                                      providers, monkeypatch):
    assert pipeline.invoke("analyzer", analyzer_event(pipeline, "user123/slowvec.jpg")).ok
    [event] = pipeline.receive("embedder")
    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "0.5")
    providers.embeddings.script(*[hang(30)] * 4)

    # 10 s, not 6: a retry is made only while the time left after it exceeds the 3 s safety
    # margin plus the backoff and one attempt, so with 6 s the invocation's own work before the
    # first call (voyageai's import, the database, the secret) had to stay under 1.4 s, which
    # a loaded machine did not give it -- one call, no retry, and this failed.
    outcome, elapsed, left = call_with_time_left(pipeline, "embedder", event, 10)

    assert type(outcome).__name__ == "RetryableError", outcome
    assert "Timeout" in outcome.reason
    assert len(providers.embeddings.requests) >= 2, "retried while time allowed"
    assert elapsed < 10 and left >= 2.0
    assert rows(db, "embeddings") == 0
    assert parked(pipeline, "embedder") == []


# --------------------------------------------------------------------------- what the embedder stores


def store_analysis(db: Any, item_id: str, description: str) -> dict[str, Any]:
    """An analysis row written directly (as an older analyzer or a manual fix could have), and
    the AnalysisComplete event that announces it."""
    db.execute("INSERT INTO items (id, user_id, bucket, original_key) VALUES (%s, 'user123',"
               " 'b', %s)", (item_id, f"user123/{item_id}.jpg"))
    analysis_id = db.execute(
        "INSERT INTO analyses (item_id, user_id, category, summary, description, provider,"
        " model, raw) VALUES (%s, 'user123', 'document', 'A long letter.', %s, 'anthropic',"
        " 'claude-sonnet-4-6', '{}') RETURNING id", (item_id, description)).fetchone()[0]
    return {"source": "collections.analyzer", "detail-type": "AnalysisComplete",
            "detail": {"item_id": item_id, "user_id": "user123",
                       "analysis_id": str(analysis_id)}}


def test_an_over_long_analysis_is_refused_not_truncated(pipeline, db, providers):
    from collections_core import embedding_rules

    event = store_analysis(db, "letter", "word " * (embedding_rules.MAX_TEXT_CHARS // 5 + 100))

    result = pipeline.invoke("embedder", event)

    assert result.ok and result.result["status"] == "failed"
    assert f"the limit is {embedding_rules.MAX_TEXT_CHARS}" in result.result["reason"]
    assert providers.embeddings.requests == [], "nothing shortened and sent"
    assert rows(db, "embeddings") == 0
    [dead] = parked(pipeline, "embedder")
    assert dead["requestContext"]["condition"] == "TerminalError"
    assert "characters; the limit is" in dead["responsePayload"]["errorMessage"]


def test_a_text_at_the_limit_is_sent_whole_with_truncation_off(pipeline, db, providers):
    from collections_core import embedding_rules

    event = store_analysis(db, "memo", "")
    overhead = len(embedding_rules.document_text({
        "category": "document", "summary": "A long letter.", "description": "",
        "tags": [], "colors": []}))
    description = "w" * (embedding_rules.MAX_TEXT_CHARS - overhead)
    db.execute("UPDATE analyses SET description = %s WHERE item_id = 'memo'", (description,))

    result = pipeline.invoke("embedder", event)

    assert result.ok and result.result["status"] == "embedded", result
    [sent] = providers.embeddings.requests
    assert sent.body["truncation"] is False
    assert [len(t) for t in sent.body["input"]] == [embedding_rules.MAX_TEXT_CHARS]
    assert rows(db, "embeddings") == 1


def test_a_zero_vector_from_the_provider_is_refused(pipeline, db, providers):
    event = store_analysis(db, "blank", "")
    providers.embeddings.script(ok([[0.0] * 1024]))

    result = pipeline.invoke("embedder", event)

    assert result.ok and result.result["status"] == "failed"
    assert "degenerate embedding" in result.result["reason"]
    assert rows(db, "embeddings") == 0
    assert len(parked(pipeline, "embedder")) == 1


def test_a_vector_of_the_wrong_dimension_for_the_model_is_refused(pipeline, db, providers):
    event = store_analysis(db, "short", "")
    providers.embeddings.script(ok([fake_embedding("short", 512)]))

    result = pipeline.invoke("embedder", event)

    assert rows(db, "embeddings") == 0
    assert result.ok and result.result["status"] == "failed"
    assert "dimension" in result.result["reason"]
