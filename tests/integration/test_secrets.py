"""Secrets are read from SSM (moto) in one GetParameters call per invocation, and cached."""

from __future__ import annotations

import json
from typing import Any

import pytest

from collections_core import aws, secrets, state
from collections_core.errors import ConfigurationError
from tests import images


def _count_ssm_calls() -> list[str]:
    """The SSM operations this thread's (container's) client makes from now on."""
    calls: list[str] = []
    aws.client("ssm").meta.events.register(
        "before-call.ssm", lambda model, **_: calls.append(model.name))
    return calls


def _put(pipeline: Any, name: str, value: str) -> None:
    pipeline.client("ssm").put_parameter(Name=secrets.parameter_name(name), Value=value,
                                         Type="SecureString", Overwrite=True)


def test_prefetch_reads_every_secret_in_one_call_and_get_uses_the_cache(pipeline: Any) -> None:
    _put(pipeline, "ANTHROPIC_API_KEY", "sk-ant-batched")
    state.reset()
    calls = _count_ssm_calls()
    secrets.prefetch(required=("DATABASE_URL", "ANTHROPIC_API_KEY", None),
                     optional=("LANGSMITH_API_KEY",))
    assert calls == ["GetParameters"]
    assert secrets.get("ANTHROPIC_API_KEY") == "sk-ant-batched"
    assert secrets.get("DATABASE_URL", required=True)
    assert secrets.get("LANGSMITH_API_KEY", required=False) is None  # absent, cached briefly
    secrets.prefetch(required=("DATABASE_URL", "ANTHROPIC_API_KEY"),
                     optional=("LANGSMITH_API_KEY",))
    assert calls == ["GetParameters"], "nothing read twice while cached"


def test_an_absent_required_secret_is_not_cached_by_prefetch(pipeline: Any) -> None:
    state.reset()
    calls = _count_ssm_calls()
    secrets.prefetch(required=("DATABASE_URL", "OPENAI_API_KEY"))
    # get() looks again (an operator may have put it since) and names what to do.
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY does not exist") as info:
        secrets.get("OPENAI_API_KEY")
    assert "collections secrets put OPENAI_API_KEY" in (info.value.hint or "")
    assert calls == ["GetParameters", "GetParameters"]
    _put(pipeline, "OPENAI_API_KEY", "sk-openai-now-there")
    assert secrets.get("OPENAI_API_KEY") == "sk-openai-now-there"


def test_more_names_than_one_call_takes_are_read_in_chunks(pipeline: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    names = [f"EXTRA_{i}" for i in range(secrets.MAX_NAMES_PER_CALL + 2)]
    monkeypatch.setenv("SECRET_PARAMETERS", json.dumps(
        {name: [f"/collections/local/{name}"] for name in names}))
    for name in names:
        _put(pipeline, name, f"value-{name}")
    state.reset()
    calls = _count_ssm_calls()
    secrets.prefetch(required=names)
    assert calls == ["GetParameters", "GetParameters"]
    assert [secrets.get(n) for n in names] == [f"value-{n}" for n in names]
    assert len(calls) == 2


def test_a_cold_analyzer_asks_ssm_once(pipeline: Any) -> None:
    # GIVEN an image the processor has stored and announced
    pipeline.upload("user123/one-call.jpg", images.photo(640, 480))
    for event in pipeline.s3_events():
        assert pipeline.invoke("processor", event).ok
    (event,) = pipeline.receive("analyzer")
    # WHEN a cold analyzer container handles the event
    state.reset()
    calls = _count_ssm_calls()
    result = pipeline.invoke("analyzer", event)
    # THEN it read the database URL and the optional LangSmith key in one call
    assert result.ok and result.result["status"] == "analyzed", result
    assert calls == ["GetParameters"]
