"""Optional LangSmith tracing of the analyzer's model call, through the real `langsmith` SDK.

On when the LANGSMITH_API_KEY secret exists. A trace records which provider and model analysed
which item, how long it took, what category and summary came back and the tokens the provider
reported (as LangSmith's `usage_metadata`) -- never the image, never a key. Tracing must not
cost an analysis: if LangSmith is unreachable or the SDK is missing, the failure is logged and
the analysis goes on. `LANGSMITH_ENDPOINT` and `LANGSMITH_PROJECT`
select the server and project (default project: collections-<env>).
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from collections_core import log

logger = log.get_logger("collections.analyzer.tracing")
T = TypeVar("T")


def traced(call: Callable[[], T], *, api_key: str | None, inputs: dict[str, Any],
           env_name: str, outputs: Callable[[T], dict[str, Any]]) -> T:
    """Run `call()`; when a key is given, record it as a LangSmith `llm` run whose outputs are
    `outputs(result)`."""
    if not api_key:
        return call()
    client = _client(api_key)
    run_id = uuid.uuid4()
    project = os.environ.get("LANGSMITH_PROJECT") or f"collections-{env_name}"
    started = _safe(lambda: client.create_run(
        name="analyze-image", run_type="llm", inputs=inputs, id=run_id,
        project_name=project, start_time=datetime.now(UTC)), "start") if client else False
    try:
        result = call()
    except Exception as exc:
        if started:
            error = f"{type(exc).__name__}: {getattr(exc, 'reason', '')}"[:500]
            _safe(lambda: client.update_run(run_id, error=error, end_time=datetime.now(UTC)),
                  "end")
        raise
    if started:
        shown = outputs(result)
        _safe(lambda: client.update_run(run_id, outputs=shown, end_time=datetime.now(UTC)),
              "end")
    return result


def _client(api_key: str) -> Any:
    try:
        import langsmith
    except ImportError:
        log.event(logger, "tracing skipped: the langsmith package is not installed",
                  logging.WARNING)
        return None
    from urllib3.util.retry import Retry

    # One quick retry at most: a trace is not worth the function's time budget.
    return langsmith.Client(api_key=api_key, api_url=os.environ.get("LANGSMITH_ENDPOINT"),
                            auto_batch_tracing=False, timeout_ms=3000,
                            retry_config=Retry(total=1, backoff_factor=0.1))


def _safe(action: Callable[[], Any], what: str) -> bool:
    try:
        action()
    except Exception as exc:
        log.event(logger, f"tracing {what} failed: {type(exc).__name__}", logging.WARNING)
        return False
    return True
