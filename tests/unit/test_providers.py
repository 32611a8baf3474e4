"""The provider code driven through the real SDKs (anthropic, voyageai, openai) against a fake
HTTP server on 127.0.0.1 -- no test reaches the internet -- plus the offline providers.

Timing notes: retry.with_budget keeps SAFETY_MARGIN_S (3 s) in reserve and only waits for a retry
when, after the wait, at least min(PROVIDER_TIMEOUT_S, 5) s would be left. The budgets below are
chosen against those rules so every test finishes in a few seconds.
"""

from __future__ import annotations

import base64
import io
import json
import math
import random
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
for _p in (ROOT, ROOT / "lambdas" / "shared", ROOT / "lambdas" / "analyzer",
           ROOT / "lambdas" / "embedder"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from PIL import Image, ImageDraw  # noqa: E402

import embedding  # noqa: E402
import vision  # noqa: E402
from collections_core import embedding_rules  # noqa: E402
from collections_core.errors import (  # noqa: E402
    ConfigurationError,
    RetryableError,
    TerminalError,
)
from tests.fakes.providers import (  # noqa: E402
    INVALID_ANALYSIS,
    VALID_ANALYSIS,
    FakeProviders,
    bad_request,
    fake_embedding,
    hang,
    invalid_analysis,
    not_json,
    ok,
    overloaded,
    rate_limited,
    server_error,
    status,
)

pytestmark = pytest.mark.timeout(30)

KEY = "sk-test-fake-key"
CLAUDE = "claude-sonnet-4-6"  # the default, claude-sonnet-4-5, makes the SDK warn (deprecated)
VOYAGE = "voyage-3.5"


# --------------------------------------------------------------------------- fixtures & helpers


@pytest.fixture(autouse=True)
def no_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Refuse any connection or name lookup that is not the loopback interface."""
    real_connect = socket.socket.connect
    real_getaddrinfo = socket.getaddrinfo
    local = {"127.0.0.1", "localhost", "::1"}

    def connect(self: socket.socket, address: Any) -> Any:
        if self.family in (socket.AF_INET, socket.AF_INET6) and address[0] not in local:
            raise AssertionError(f"test tried to reach the network: {address!r}")
        return real_connect(self, address)

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in local and host is not None:
            raise AssertionError(f"test tried to resolve {host!r}")
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProviders]:
    for var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                "all_proxy", "ANTHROPIC_BASE_URL", "ANTHROPIC_AUTH_TOKEN", "OPENAI_BASE_URL",
                "VOYAGE_API_KEY", "PROVIDER_TIMEOUT_S"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with FakeProviders(api_key=KEY) as server:
        monkeypatch.setenv("VOYAGE_BASE_URL", server.voyage_base_url)
        yield server


def budget(seconds: float) -> Callable[[], float]:
    """A Lambda-like remaining-time callback with `seconds` left from now."""
    deadline = time.monotonic() + seconds
    return lambda: deadline - time.monotonic()


def jpeg_bytes(size: tuple[int, int] = (64, 48)) -> bytes:
    image = Image.new("RGB", size, (200, 40, 40))
    ImageDraw.Draw(image).ellipse((8, 8, 40, 40), fill=(30, 70, 200))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=80)
    return out.getvalue()


JPEG = jpeg_bytes()


def analyse(fake: FakeProviders, *, remaining: float = 60.0, key: str = KEY,
            jpeg: bytes = JPEG) -> dict[str, Any]:
    return vision.anthropic_analysis(jpeg, api_key=key, model=CLAUDE,
                                     remaining_s=budget(remaining),
                                     base_url=fake.anthropic_base_url).analysis


def embed(texts: list[str], *, remaining: float = 60.0, key: str = KEY) -> list[list[float]]:
    return embedding.voyage_embed(texts, api_key=key, model=VOYAGE, input_type="document",
                                  remaining_s=budget(remaining))


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


# --------------------------------------------------------------------------- anthropic


def test_given_a_tool_use_answer_when_analysing_then_the_analysis_comes_back_and_validates(
        fake: FakeProviders) -> None:
    analysis = analyse(fake)

    assert analysis == VALID_ANALYSIS
    assert vision.validate(analysis) == VALID_ANALYSIS
    assert len(fake.messages.requests) == 1


def test_given_an_image_when_analysing_then_the_request_carries_base64_jpeg_and_forces_the_tool(
        fake: FakeProviders) -> None:
    analyse(fake)

    request = fake.messages.last
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.api_key == KEY
    assert "anthropic-version" in request.headers
    body = request.body
    assert body["model"] == CLAUDE
    assert body["tool_choice"] == {"type": "tool", "name": "record_analysis"}
    assert [t["name"] for t in body["tools"]] == ["record_analysis"]
    assert body["tools"][0]["input_schema"] == vision.ANALYSIS_SCHEMA
    [message] = body["messages"]
    assert message["role"] == "user"
    image_block, text_block = message["content"]
    assert image_block["type"] == "image"
    assert image_block["source"]["type"] == "base64"
    assert image_block["source"]["media_type"] == "image/jpeg"
    decoded = base64.b64decode(image_block["source"]["data"], validate=True)
    assert decoded == JPEG
    assert decoded[:2] == b"\xff\xd8"  # a JPEG's SOI marker
    assert text_block == {"type": "text", "text": vision.PROMPT}


def test_given_429_with_retry_after_then_success_when_analysing_then_it_succeeds_after_one_retry(
        fake: FakeProviders) -> None:
    fake.messages.script(rate_limited(retry_after=0.2), ok())

    analysis = analyse(fake)

    assert analysis == VALID_ANALYSIS
    first, second = fake.messages.requests
    assert second.at - first.at >= 0.2  # the retry-after was honoured
    assert fake.messages.pending == 0


def test_given_529_overloaded_then_success_when_analysing_then_it_succeeds(
        fake: FakeProviders) -> None:
    fake.messages.script(overloaded(), ok())

    assert analyse(fake) == VALID_ANALYSIS
    assert len(fake.messages.requests) == 2


def test_given_500_then_success_when_analysing_then_it_succeeds(fake: FakeProviders) -> None:
    fake.messages.script(server_error(), ok())

    assert analyse(fake) == VALID_ANALYSIS
    assert len(fake.messages.requests) == 2


def test_given_429_without_retry_after_then_success_when_analysing_then_it_backs_off_and_succeeds(
        fake: FakeProviders) -> None:
    fake.messages.script(rate_limited(), ok())

    assert analyse(fake) == VALID_ANALYSIS
    first, second = fake.messages.requests
    assert second.at - first.at >= 0.5  # base_delay_s


def test_given_429_every_time_when_the_budget_runs_out_then_retryable_error_within_budget(
        fake: FakeProviders, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "1")
    fake.messages.script(*[rate_limited(retry_after=1.0)] * 4)
    started = time.monotonic()

    with pytest.raises(RetryableError, match="429"):
        analyse(fake, remaining=6.0)

    # 6 s left: one wait of 1 s fits, a second would eat into the 3 s safety margin.
    assert len(fake.messages.requests) == 2
    assert fake.messages.requests[1].at - fake.messages.requests[0].at >= 1.0
    assert time.monotonic() - started < 6.0 - 3.0


def test_given_retry_after_longer_than_the_time_left_when_analysing_then_it_gives_up_at_once(
        fake: FakeProviders) -> None:
    fake.messages.script(rate_limited(retry_after=30))
    started = time.monotonic()

    with pytest.raises(RetryableError):
        analyse(fake, remaining=20.0)

    assert len(fake.messages.requests) == 1
    assert time.monotonic() - started < 2.0


def test_given_a_rejected_key_when_analysing_then_configuration_error(
        fake: FakeProviders) -> None:
    with pytest.raises(ConfigurationError) as caught:
        analyse(fake, key="sk-wrong")

    assert "401" in caught.value.reason
    assert caught.value.hint is not None
    assert "ANTHROPIC_API_KEY" in caught.value.hint
    assert len(fake.messages.requests) == 1  # not retried
    assert fake.messages.last.api_key == "sk-wrong"


def test_given_a_400_when_analysing_then_terminal_error_with_the_api_message(
        fake: FakeProviders) -> None:
    fake.messages.script(bad_request("image exceeds 5 MB maximum"))

    with pytest.raises(TerminalError, match=r"400.*image exceeds 5 MB maximum") as caught:
        analyse(fake)

    assert not isinstance(caught.value, ConfigurationError)
    assert len(fake.messages.requests) == 1


def test_given_schema_invalid_tool_input_when_validating_then_terminal_error(
        fake: FakeProviders) -> None:
    fake.messages.script(invalid_analysis())

    analysis = analyse(fake)

    assert analysis == INVALID_ANALYSIS
    with pytest.raises(TerminalError):
        vision.validate(analysis)


def test_given_a_non_json_200_with_json_content_type_when_analysing_then_retryable_error(
        fake: FakeProviders) -> None:
    fake.messages.script(*[not_json()] * 4)

    with pytest.raises(RetryableError, match="not JSON"):
        analyse(fake, remaining=10.0)

    assert len(fake.messages.requests) >= 2  # it was retried


def test_given_a_non_json_200_then_success_when_analysing_then_the_retry_succeeds(
        fake: FakeProviders) -> None:
    fake.messages.script(not_json(), ok())

    assert analyse(fake) == VALID_ANALYSIS
    assert len(fake.messages.requests) == 2


def test_given_a_200_html_page_when_analysing_then_retryable_error(fake: FakeProviders) -> None:
    fake.messages.script(*[not_json(content_type="text/html")] * 4)

    with pytest.raises(RetryableError):
        analyse(fake, remaining=10.0)


def test_given_a_hung_connection_when_analysing_then_retried_then_retryable_error_within_budget(
        fake: FakeProviders, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "0.5")
    fake.messages.script(*[hang(10)] * 4)
    started = time.monotonic()

    with pytest.raises(RetryableError, match="APITimeoutError"):
        analyse(fake, remaining=6.0)

    elapsed = time.monotonic() - started
    assert len(fake.messages.requests) >= 2
    assert elapsed < 6.0 - 3.0  # gave up inside the budget, keeping the safety margin


def test_given_a_hang_then_success_when_analysing_then_the_retry_succeeds(
        fake: FakeProviders, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "0.5")
    fake.messages.script(hang(10), ok())

    assert analyse(fake, remaining=60.0) == VALID_ANALYSIS
    assert len(fake.messages.requests) == 2


def test_given_stop_reason_max_tokens_when_analysing_then_terminal_error(
        fake: FakeProviders) -> None:
    fake.messages.script(ok(stop_reason="max_tokens"))

    with pytest.raises(TerminalError, match="max_tokens"):
        analyse(fake)


def test_given_a_text_only_answer_when_analysing_then_terminal_error(
        fake: FakeProviders) -> None:
    fake.messages.script(ok(json_body={
        "id": "msg_text", "type": "message", "role": "assistant", "model": CLAUDE,
        "content": [{"type": "text", "text": "I cannot help with that."}],
        "stop_reason": "end_turn", "stop_sequence": None,
        "usage": {"input_tokens": 10, "output_tokens": 5}}))

    with pytest.raises(TerminalError, match="no structured analysis"):
        analyse(fake)


def test_given_too_little_time_when_analysing_then_no_request_and_retryable_error(
        fake: FakeProviders) -> None:
    with pytest.raises(RetryableError):
        analyse(fake, remaining=3.5)

    assert fake.messages.requests == []


# --------------------------------------------------------------------------- voyage


def test_given_voyage_when_embedding_then_a_1024_d_vector_comes_back_from_base64_float32(
        fake: FakeProviders) -> None:
    text = embedding_rules.document_text(VALID_ANALYSIS)

    [vector] = embed([text])

    assert len(vector) == 1024
    assert all(isinstance(v, float) for v in vector)
    assert vector == pytest.approx(fake_embedding(text, 1024), abs=1e-6)
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-5)


def test_given_voyage_when_embedding_then_the_request_disables_truncation_as_a_document(
        fake: FakeProviders) -> None:
    embed(["a red kayak", "a blue canoe"])

    request = fake.embeddings.last
    assert (request.method, request.path) == ("POST", "/v1/embeddings")
    assert request.auth_scheme == "bearer"
    assert request.api_key == KEY
    assert request.body["input"] == ["a red kayak", "a blue canoe"]
    assert request.body["model"] == VOYAGE
    assert request.body["input_type"] == "document"
    assert request.body["truncation"] is False
    assert request.body["encoding_format"] == "base64"


def test_given_several_texts_when_embedding_then_one_vector_each_in_order(
        fake: FakeProviders) -> None:
    texts = ["alpha", "beta", "gamma"]

    vectors = embed(texts)

    assert len(vectors) == 3
    for text, vector in zip(texts, vectors, strict=True):
        assert vector == pytest.approx(fake_embedding(text, 1024), abs=1e-6)


def test_given_voyage_429_then_success_when_embedding_then_it_succeeds(
        fake: FakeProviders) -> None:
    fake.embeddings.script(rate_limited(), ok())

    [vector] = embed(["hello"])

    assert len(vector) == 1024
    assert len(fake.embeddings.requests) == 2


def test_given_voyage_503_then_success_when_embedding_then_it_succeeds(
        fake: FakeProviders) -> None:
    fake.embeddings.script(status(503), ok())

    assert len(embed(["hello"])[0]) == 1024
    assert len(fake.embeddings.requests) == 2


def test_given_voyage_rejects_the_key_when_embedding_then_configuration_error(
        fake: FakeProviders) -> None:
    with pytest.raises(ConfigurationError) as caught:
        embed(["hello"], key="pa-wrong")

    assert caught.value.hint is not None
    assert "VOYAGE_API_KEY" in caught.value.hint
    assert len(fake.embeddings.requests) == 1


def test_given_voyage_400_when_embedding_then_terminal_error(fake: FakeProviders) -> None:
    fake.embeddings.script(bad_request("input too long"))

    with pytest.raises(TerminalError, match="input too long") as caught:
        embed(["hello"])

    assert not isinstance(caught.value, ConfigurationError)


def test_given_voyage_429_every_time_when_the_budget_runs_out_then_retryable_error(
        fake: FakeProviders, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "1")
    fake.embeddings.script(*[rate_limited()] * 4)

    with pytest.raises(RetryableError, match="RateLimitError"):
        embed(["hello"], remaining=5.0)

    assert 1 <= len(fake.embeddings.requests) < 4


def test_given_voyage_hangs_when_embedding_then_retried_then_retryable_error_within_budget(
        fake: FakeProviders, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PROVIDER_TIMEOUT_S", "0.5")
    fake.embeddings.script(*[hang(10)] * 4)
    started = time.monotonic()

    with pytest.raises(RetryableError, match="Timeout"):
        embed(["hello"], remaining=6.0)

    assert len(fake.embeddings.requests) >= 2
    assert time.monotonic() - started < 6.0 - 3.0


def test_given_voyage_returns_too_few_vectors_when_embedding_then_terminal_error(
        fake: FakeProviders) -> None:
    fake.embeddings.script(ok([[0.0] * 1024]))

    with pytest.raises(TerminalError, match="1 embeddings for 2 texts"):
        embed(["one", "two"])


def test_given_voyage_429_with_retry_after_longer_than_time_left_then_it_gives_up_at_once(
        fake: FakeProviders) -> None:
    fake.embeddings.script(rate_limited(retry_after=30))

    with pytest.raises(RetryableError):
        embed(["hello"], remaining=20.0)

    assert len(fake.embeddings.requests) == 1


def test_given_voyage_non_json_200_when_embedding_then_retryable_error(
        fake: FakeProviders) -> None:
    fake.embeddings.script(*[not_json()] * 4)

    with pytest.raises(RetryableError):
        embed(["hello"], remaining=10.0)


def test_given_voyage_520_when_embedding_then_retryable_error(fake: FakeProviders) -> None:
    fake.embeddings.script(*[status(520)] * 4)

    with pytest.raises(RetryableError):
        embed(["hello"], remaining=10.0)


# --------------------------------------------------------------------------- openai


def openai_analyse(fake: FakeProviders, *, key: str = KEY) -> dict[str, Any]:
    return vision.openai_analysis(JPEG, api_key=key, model="gpt-4.1-mini",
                                  remaining_s=budget(60.0), base_url=fake.openai_base_url).analysis


def test_given_openai_when_analysing_then_the_json_schema_answer_comes_back(
        fake: FakeProviders) -> None:
    analysis = openai_analyse(fake)

    assert vision.validate(analysis) == VALID_ANALYSIS
    request = fake.chat.last
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.auth_scheme == "bearer"
    assert request.api_key == KEY
    assert request.body["response_format"]["type"] == "json_schema"
    assert request.body["response_format"]["json_schema"]["schema"] == vision.ANALYSIS_SCHEMA
    content = request.body["messages"][0]["content"]
    image = next(part for part in content if part["type"] == "image_url")
    prefix = "data:image/jpeg;base64,"
    assert image["image_url"]["url"].startswith(prefix)
    assert base64.b64decode(image["image_url"]["url"][len(prefix):]) == JPEG


def test_given_openai_429_then_success_when_analysing_then_it_succeeds(
        fake: FakeProviders) -> None:
    fake.chat.script(rate_limited(retry_after=0.2), ok())

    assert openai_analyse(fake) == VALID_ANALYSIS
    assert len(fake.chat.requests) == 2


def test_given_openai_rejects_the_key_when_analysing_then_configuration_error(
        fake: FakeProviders) -> None:
    with pytest.raises(ConfigurationError, match="401"):
        openai_analyse(fake, key="sk-wrong")


def test_given_openai_answers_prose_when_analysing_then_terminal_error(
        fake: FakeProviders) -> None:
    fake.chat.script(ok("Sure! Here is the analysis: a kayak."))

    with pytest.raises(TerminalError, match="not JSON"):
        openai_analyse(fake)


def test_given_openai_non_json_200_when_analysing_then_retryable_error(
        fake: FakeProviders) -> None:
    fake.chat.script(*[not_json()] * 4)

    with pytest.raises(RetryableError):
        vision.openai_analysis(JPEG, api_key=KEY, model="gpt-4.1-mini",
                               remaining_s=budget(10.0), base_url=fake.openai_base_url)


def test_given_openai_200_html_page_when_analysing_then_retryable_error(
        fake: FakeProviders) -> None:
    fake.chat.script(*[not_json(content_type="text/html")] * 4)

    with pytest.raises(RetryableError):
        vision.openai_analysis(JPEG, api_key=KEY, model="gpt-4.1-mini",
                               remaining_s=budget(10.0), base_url=fake.openai_base_url)


# --------------------------------------------------------------------------- the fake itself


def test_given_the_fake_when_a_bearer_or_x_api_key_is_sent_then_both_are_recorded(
        fake: FakeProviders) -> None:
    import urllib.request

    for headers in ({"x-api-key": KEY}, {"Authorization": f"Bearer {KEY}"}):
        request = urllib.request.Request(
            fake.url + "/v1/messages", method="POST", data=json.dumps({"model": "m"}).encode(),
            headers={"content-type": "application/json", **headers})
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200
            assert json.loads(response.read())["stop_reason"] == "tool_use"

    assert [r.auth_scheme for r in fake.messages.requests] == ["x-api-key", "bearer"]
    assert {r.api_key for r in fake.messages.requests} == {KEY}


# --------------------------------------------------------------------------- validate


def _with(**changes: Any) -> dict[str, Any]:
    return {**VALID_ANALYSIS, **changes}


def test_given_a_valid_analysis_when_validating_then_it_is_returned_unchanged() -> None:
    assert vision.validate(dict(VALID_ANALYSIS)) == VALID_ANALYSIS


def test_given_text_content_omitted_or_a_string_when_validating_then_it_passes() -> None:
    without = {k: v for k, v in VALID_ANALYSIS.items() if k != "text_content"}
    assert vision.validate(without) == without
    assert vision.validate(_with(text_content="EXIT"))["text_content"] == "EXIT"


def test_given_integer_confidence_at_the_bounds_when_validating_then_it_passes() -> None:
    assert vision.validate(_with(confidence=0))["confidence"] == 0
    assert vision.validate(_with(confidence=1))["confidence"] == 1


@pytest.mark.parametrize(("analysis", "problem"), [
    (["not", "an", "object"], "not a JSON object"),
    (None, "not a JSON object"),
    ({k: v for k, v in VALID_ANALYSIS.items() if k != "summary"}, "missing summary"),
    (_with(mood="happy"), "unexpected fields: mood"),
    (_with(category="selfie"), "category"),
    (_with(confidence=1.5), "confidence is out of range"),
    (_with(confidence=-0.1), "confidence is out of range"),
    (_with(confidence=True), "confidence should be number"),
    (_with(confidence="0.9"), "confidence should be number"),
    (_with(summary=""), "summary has a bad length"),
    (_with(summary="x" * 501), "summary has a bad length"),
    (_with(tags="kayak"), "tags should be array"),
    (_with(tags=["t"] * 26), "tags has too many items"),
    (_with(tags=["x" * 61]), r"tags\[\] has a bad length"),
    (_with(tags=[1]), r"tags\[\] should be string"),
    (_with(colors=["red"] * 11), "colors has too many items"),
    (_with(text_content=42), "text_content should be string or null"),
    (_with(description=None), "description should be string"),
], ids=lambda v: v if isinstance(v, str) else "")
def test_given_a_schema_violation_when_validating_then_terminal_error_names_it(
        analysis: Any, problem: str) -> None:
    with pytest.raises(TerminalError, match=problem):
        vision.validate(analysis)


# --------------------------------------------------------------------------- local_embed


def test_given_the_same_text_when_embedding_locally_then_the_vector_is_identical() -> None:
    text = "a red kayak on a calm lake"
    assert embedding.local_embed(text) == embedding.local_embed(text)
    assert embedding.local_embed(text) == embedding.local_embed("A RED kayak, on a calm lake!")


@pytest.mark.parametrize("text", ["a red kayak on a calm lake", "x", "",
                                  embedding_rules.document_text(VALID_ANALYSIS)])
def test_given_any_text_when_embedding_locally_then_1024_d_unit_norm(text: str) -> None:
    vector = embedding.local_embed(text)

    assert len(vector) == embedding_rules.LOCAL_DIMENSIONS == 1024
    assert math.isclose(math.sqrt(sum(v * v for v in vector)), 1.0, rel_tol=1e-9)


def test_given_similar_and_unrelated_texts_when_embedding_locally_then_similar_are_closer() -> None:
    query = embedding.local_embed("red kayak on a calm mountain lake at sunrise")
    similar = embedding.local_embed("a red kayak floating on a calm lake at sunrise")
    unrelated = embedding.local_embed("spreadsheet of quarterly invoice totals for accounting")

    assert cosine(query, similar) > cosine(query, unrelated)
    assert cosine(query, similar) > 0.5
    assert abs(cosine(query, unrelated)) < 0.3


def test_given_an_analysis_when_building_document_text_then_every_field_is_in_it() -> None:
    text = embedding_rules.document_text(_with(text_content="EXIT"))

    for part in ("Category: photo", "Summary: A red kayak", "Tags: kayak, lake",
                 "Colors: red, blue", "Text: EXIT"):
        assert part in text


def test_given_an_over_long_analysis_when_building_document_text_then_terminal_error() -> None:
    with pytest.raises(TerminalError, match="limit"):
        embedding_rules.document_text(_with(description="word " * 7000))


# --------------------------------------------------------------------------- local_analysis


def _photo_like(size: tuple[int, int] = (320, 200)) -> Image.Image:
    rng = random.Random(1)
    image = Image.new("RGB", size)
    pixels = image.load()
    assert pixels is not None
    w, h = size
    for x in range(w):
        for y in range(h):
            pixels[x, y] = (min(255, x * 255 // w + rng.randint(0, 40)),
                            min(255, 60 + rng.randint(0, 60)),
                            min(255, y * 255 // h + rng.randint(0, 30)))
    return image


def test_given_a_noisy_gradient_when_analysing_locally_then_a_valid_landscape_photo() -> None:
    analysis = vision.local_analysis(_photo_like(), {"width": 3200, "height": 2000,
                                                     "camera": "Canon EOS R5"})

    assert vision.validate(analysis) is analysis
    assert analysis["category"] == "photo"
    assert "3200x2000" in analysis["summary"]
    assert "Canon EOS R5" in analysis["summary"]
    assert {"photo", "landscape", "exif"} <= set(analysis["tags"])
    assert analysis["text_content"] is None
    assert analysis["confidence"] < 0.5  # it says it is a measurement, not recognition
    assert "no vision model" in analysis["description"]


def test_given_black_text_on_white_when_analysing_locally_then_a_portrait_document() -> None:
    page = Image.new("RGB", (300, 400), "white")
    draw = ImageDraw.Draw(page)
    for i in range(20):
        draw.text((20, 15 + i * 18), "Lorem ipsum dolor sit amet consectetur " * 2, fill="black")

    analysis = vision.validate(vision.local_analysis(page, {}))

    assert analysis["category"] == "document"
    assert "portrait" in analysis["tags"]
    assert analysis["colors"][0] == "white"
    assert "exif" not in analysis["tags"]


def test_given_flat_blocks_of_colour_when_analysing_locally_then_a_square_graphic() -> None:
    image = Image.new("RGB", (200, 200), (30, 70, 200))
    ImageDraw.Draw(image).rectangle((50, 50, 150, 150), fill=(240, 220, 40))

    analysis = vision.validate(vision.local_analysis(image, {}))

    assert analysis["category"] == "graphic"
    assert "square" in analysis["tags"]
    assert analysis["colors"][:2] == ["blue", "yellow"]


def test_given_the_same_image_when_analysing_locally_twice_then_the_result_is_identical() -> None:
    image = _photo_like((120, 90))
    assert vision.local_analysis(image, {}) == vision.local_analysis(image.copy(), {})


# --------------------------------------------------------------------------- reported usage


def test_given_each_provider_when_called_then_its_reported_usage_comes_back(
        fake: FakeProviders) -> None:
    jpeg = jpeg_bytes((1500, 1000))
    claude = vision.anthropic_analysis(jpeg, api_key=KEY, model=CLAUDE, remaining_s=budget(60),
                                       base_url=fake.anthropic_base_url)
    reply = fake.messages.last.answered["usage"]
    # 1500 x 1000 / 750 = 2,000 image tokens, plus the prompt, the tool and its system prompt.
    assert 2000 + 313 < reply["input_tokens"] < 4000
    assert claude.usage == (reply["input_tokens"], reply["output_tokens"])

    gpt = vision.openai_analysis(jpeg, api_key=KEY, model="gpt-4.1-mini",
                                 remaining_s=budget(60), base_url=fake.openai_base_url)
    reply = fake.chat.last.answered["usage"]
    # 1500 x 1000 scaled to 1152 x 768: 3 x 2 tiles -> 85 + 6 x 170 = 1,105 image tokens.
    assert 1105 < reply["prompt_tokens"] < 2000
    assert gpt.usage == (reply["prompt_tokens"], reply["completion_tokens"])

    voyage = embedding.voyage_embed_reported(["a red kayak on a calm lake"], api_key=KEY,
                                             model=VOYAGE, input_type="document",
                                             remaining_s=budget(60))
    assert voyage.input_tokens == fake.embeddings.last.answered["usage"]["total_tokens"] == 7
    assert len(voyage.vectors) == 1


def test_given_a_reply_without_usage_when_analysing_then_the_usage_is_unknown(
        fake: FakeProviders) -> None:
    fake.messages.script(ok(usage={"output_tokens": 12}))
    assert vision.anthropic_analysis(JPEG, api_key=KEY, model=CLAUDE, remaining_s=budget(60),
                                     base_url=fake.anthropic_base_url).usage == (None, 12)
    fake.embeddings.script(ok(usage={"total_tokens": -1}))
    assert embedding.voyage_embed_reported(["x"], api_key=KEY, model=VOYAGE,
                                           input_type="document",
                                           remaining_s=budget(60)).input_tokens is None
