"""What every handler does around its own work: bind log context, time the invocation, and
route failures -- terminal ones to the dead-letter queue at once, retryable ones back to Lambda.

Dead-letter messages use the shape of a Lambda on-failure destination record, so the handler's
own terminal failures and Lambda's "retries exhausted" failures read the same to an operator.

It also decides what happens at init. The heavy modules every invocation needs are imported
there (`preload`), where SnapStart's snapshot and provisioned concurrency pay for them instead of
the first request. Connections, clients and secrets are not: they are made on first use, and
after a SnapStart restore (`after_restore`) the container's cached ones are dropped, because
every environment restored from one snapshot would otherwise share the same database socket,
TLS sessions, secret cache timestamps and random state.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import json
import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from typing import Any

from collections_core import aws, db, log, state
from collections_core.config import Settings
from collections_core.errors import PipelineError, RetryableError, TerminalError

logger = log.get_logger("collections")

# Provided by the Lambda runtime, not vendored: a bundle imported without it still loads.
RUNTIME_PROVIDED = ("boto3",)


def preload(*modules: str | None) -> None:
    """Import at init what every invocation needs (None entries are skipped: a provider's SDK
    when that provider is not selected), plus boto3 where the runtime provides it.

    In a Lambda execution environment the imports run with the cyclic garbage collector
    paused, and what init made is then frozen (`gc.freeze`): it lives as long as the
    environment, so no later collection needs to look at it. The SDKs build hundreds of
    thousands of objects at import (anthropic's pydantic models); every full collection
    walked all of them, several times during the import and again in the first invocation,
    ~60 ms each (docs/benchmarks.md). Elsewhere (the local cloud's dispatchers, which load
    new code into a long-lived process) nothing is frozen: a reloaded module's objects must
    stay collectable."""
    dedicated = in_lambda_environment()
    paused = dedicated and gc.isenabled()
    if paused:
        gc.disable()
    try:
        for name in modules:
            if name:
                importlib.import_module(name)
        for name in RUNTIME_PROVIDED:
            with contextlib.suppress(ImportError):
                importlib.import_module(name)
    finally:
        if dedicated:
            gc.freeze()
        if paused:
            gc.enable()


def in_lambda_environment() -> bool:
    """True in an execution environment of Lambda's own (which sets `AWS_EXECUTION_ENV` to
    `AWS_Lambda_<runtime>`); one environment runs one function's code for its lifetime."""
    return os.environ.get("AWS_EXECUTION_ENV", "").startswith("AWS_Lambda_")


def forget_container_state() -> None:
    """After a snapshot restore: drop what must not be shared between restored environments.
    The database connection, boto3 session and clients, and secrets are made again on first
    use; random's state is reseeded (uuid4 and secrets use os.urandom and need nothing)."""
    conn = state.peek("db")
    if conn is not None:
        # Its socket did not survive the snapshot: there may be nothing to close cleanly.
        with contextlib.suppress(Exception):
            conn.close()
    state.reset()
    random.seed()


def _register_restore_hook() -> bool:
    try:
        from snapshot_restore_py import register_after_restore  # Lambda's Python runtimes
    except ImportError:
        return False  # not on Lambda (local cloud, tests): no snapshot is ever restored
    register_after_restore(forget_container_state)
    return True


RESTORE_HOOK_REGISTERED = _register_restore_hook()


def failure_record(*, function_name: str, request_id: str, event: Any, condition: str,
                   error_type: str, reason: str) -> dict[str, Any]:
    return {
        "version": "1.0",
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()),
        "requestContext": {
            "requestId": request_id,
            "functionArn": function_name,
            "condition": condition,
            "approximateInvokeCount": 1,
        },
        "requestPayload": event,
        "responseContext": {"statusCode": 200, "functionError": "Unhandled"},
        "responsePayload": {"errorType": error_type, "errorMessage": log.mask(reason)},
    }


def dead_letter(function_key: str, event: Any, error: PipelineError, context: Any) -> None:
    url = Settings.dlq_url_for(function_key)
    record = failure_record(
        function_name=getattr(context, "function_name", function_key),
        request_id=getattr(context, "aws_request_id", str(uuid.uuid4())),
        event=event, condition="TerminalError", error_type=type(error).__name__,
        reason=error.reason,
    )
    if url is None:
        log.event(logger, "no dead-letter queue configured; failure recorded in logs only",
                  logging.ERROR, outcome="failed")
        return
    try:
        aws.client("sqs").send_message(QueueUrl=url, MessageBody=json.dumps(record, default=str))
    except Exception as exc:
        # Could not park it: let Lambda retry (and its on-failure destination catch it).
        raise RetryableError(f"sending to the dead-letter queue failed: {exc}") from None


def remaining_seconds(context: Any) -> Callable[[], float]:
    """A clock of the invocation's remaining time, for retry budgets."""

    def remaining_s() -> float:
        getter = getattr(context, "get_remaining_time_in_millis", None)
        return getter() / 1000 if getter else 60.0

    return remaining_s


def invoke(function_key: str, event: Any, context: Any,
           work: Callable[[Any, Any], dict[str, Any]]) -> dict[str, Any]:
    log.clear()
    state.forget("db_checked")  # the database connection is checked once per invocation
    db.connect_as(function_key)  # with the function's own credentials
    log.bind(function=function_key, request_id=getattr(context, "aws_request_id", None))
    started = time.perf_counter()
    try:
        result = work(event, context)
    except TerminalError as exc:
        log.event(logger, f"failed: {exc.reason}", logging.ERROR, outcome="failed",
                  retryable=False, reason=exc.reason, hint=exc.hint,
                  duration_ms=round((time.perf_counter() - started) * 1000, 1))
        dead_letter(function_key, event, exc, context)
        return {"status": "failed", "reason": exc.reason}
    except RetryableError as exc:
        log.event(logger, f"will retry: {exc.reason}", logging.WARNING, outcome="retry",
                  retryable=True, reason=exc.reason)
        raise
    except Exception as exc:
        masked = log.mask(str(exc))
        log.event(logger, f"unexpected error: {type(exc).__name__}: {masked[:500]}",
                  logging.ERROR, outcome="error", retryable=True)
        if masked != str(exc):
            # What Lambda writes for an unhandled error (its log line, the on-failure record's
            # errorMessage) is str(exc): mask it, keeping the type and the traceback.
            exc.args = (masked,)
        raise
    log.event(logger, "invocation complete", outcome="ok",
              duration_ms=round((time.perf_counter() - started) * 1000, 1))
    return result
