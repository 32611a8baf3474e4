"""boto3 clients, created on first use and reused by the container.

boto3 honours AWS_ENDPOINT_URL, which is how the same code talks to the local cloud.
"""

from __future__ import annotations

import json
import os
from typing import Any

from collections_core import state
from collections_core.errors import RetryableError, TerminalError

RETRYABLE_AWS_CODES = {
    "Throttling", "ThrottlingException", "ThrottledException", "RequestLimitExceeded",
    "TooManyRequestsException", "ServiceUnavailable", "InternalError", "InternalFailure",
    "SlowDown", "RequestTimeout", "ProvisionedThroughputExceededException",
}


def session() -> Any:
    """The container's boto3 session. One per container (per thread locally: creating clients
    from one session is not thread-safe): each session loads botocore's endpoint and partition
    data again, which made every further client cost a cold start ~50-100 ms more."""

    def make() -> Any:
        import boto3

        return boto3.session.Session()

    return state.cached("aws:session", make)


def client(service: str) -> Any:
    def make() -> Any:
        from botocore.config import Config

        cfg = Config(retries={"mode": "standard", "max_attempts": 3},
                     connect_timeout=5, read_timeout=30)
        return session().client(service, config=cfg)

    return state.cached(f"aws:{service}", make)


def error_code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        code = response.get("Error", {}).get("Code")
        return str(code) if code is not None else None
    return None


def classify(exc: BaseException, what: str) -> Exception:
    """Turn a botocore error into a pipeline error with a sentence an operator can act on."""
    code = error_code(exc)
    if code in RETRYABLE_AWS_CODES or code is None:
        return RetryableError(f"{what}: {code or type(exc).__name__}")
    if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
        # AWS's message names the principal, the action and the resource: what to grant.
        detail = str(exc.response.get("Error", {}).get("Message") or "")[:500]  # type: ignore[attr-defined]
        return TerminalError(f"{what}: access denied" + (f" ({detail})" if detail else ""),
                             hint="check the function's IAM role")
    return TerminalError(f"{what}: {code}")


TRACE_ENV = "_X_AMZN_TRACE_ID"
MAX_TRACE_HEADER_CHARS = 500


def trace_header() -> str | None:
    """The invocation's X-Ray trace context. EventBridge passes trace context on to its targets
    only when the PutEvents entry carries it as `TraceHeader`."""
    value = os.environ.get(TRACE_ENV, "").strip()
    if not value or len(value) > MAX_TRACE_HEADER_CHARS or not value.isprintable():
        return None
    return value


def put_event(*, source: str, detail_type: str, detail: dict[str, Any], bus: str) -> str:
    """Publish one event; a partial failure (`FailedEntryCount`) is an error, never ignored.

    Details are bounded by construction (see `events.MAX_DETAIL_BYTES`); one that is not is a
    bug, refused here before anything is sent."""
    from collections_core.events import MAX_DETAIL_BYTES

    body = json.dumps(detail, separators=(",", ":"), sort_keys=True)
    if len(body.encode()) > MAX_DETAIL_BYTES:
        raise TerminalError(f"{detail_type} detail is {len(body.encode())} bytes; "
                            f"the pipeline's bound is {MAX_DETAIL_BYTES}")
    entry = {"Source": source, "DetailType": detail_type, "Detail": body, "EventBusName": bus}
    header = trace_header()
    if header:
        entry["TraceHeader"] = header
    try:
        response = client("events").put_events(Entries=[entry])
    except Exception as exc:
        if type(exc).__module__.startswith("botocore"):
            raise classify(exc, f"publishing {detail_type}") from exc
        raise
    if response.get("FailedEntryCount", 0):
        entry = response["Entries"][0]
        raise RetryableError(
            f"publishing {detail_type} failed: {entry.get('ErrorCode')} {entry.get('ErrorMessage')}"
        )
    return str(response["Entries"][0].get("EventId", ""))
