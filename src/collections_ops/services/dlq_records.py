"""Decoding a dead letter: which stage failed, on which item, with what error.

Reading a queue (`dlq.py`) and replaying what is in it (`dlq_redrive.py`) both need to know
what a message in a dead-letter queue says, and `verify` and `follow` explain a stopped item by
it; the formats are decided here once. Each function has one dead-letter queue
(`Function.dlq_name`). Two kinds of message land there:

- a *Lambda on-failure record* -- written by Lambda when its asynchronous retries are exhausted,
  by a handler for a terminal failure (`collections_core.runtime`), and by the local dispatcher:
  `requestContext.condition`, `responsePayload.errorType/errorMessage`, and the original event
  as `requestPayload`;
- an *EventBridge dead letter* -- a rule that could not deliver to its target: the body is the
  original event, the reason is in the message attributes ERROR_CODE / ERROR_MESSAGE (plus
  RULE_ARN / TARGET_ARN).

Decoding is a plain function of the message: matching is on the decoded fields, never on error
text, and a body that is not JSON is still a `FailedEvent` (UNREADABLE), never an exception.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import unquote_plus

from collections_ops import errors
from collections_ops.pipeline import FUNCTIONS, Function

LAMBDA_RECORD = "lambda-destination"
EVENTBRIDGE_DLQ = "eventbridge-dlq"
LAMBDA_DLQ = "lambda-dlq"  # a function's DeadLetterConfig: body = event, ErrorCode attributes
UNREADABLE = "unreadable"

# The condition of the record a handler writes for its own terminal failures
# (`collections_core.runtime.dead_letter`); its errorType is the TerminalError subclass.
TERMINAL_CONDITION = "TerminalError"
REDRIVABLE_TERMINAL = frozenset({"ConfigurationError"})


@dataclass(frozen=True)
class FailedEvent:
    """One dead letter, decoded: which stage failed, on which item, with what error."""

    function_key: str
    stage: str
    message_id: str
    format: str  # LAMBDA_RECORD | EVENTBRIDGE_DLQ | LAMBDA_DLQ | UNREADABLE
    condition: str | None  # TerminalError, RetriesExhausted, EventAgeExceeded, ERROR_CODE...
    error_type: str | None
    error_message: str | None
    user_id: str | None
    item_id: str | None
    key: str | None  # the S3 key, decoded (S3 events only)
    event_kind: str  # "s3" | "eventbridge" | "unknown"
    failed_at: float | None  # epoch seconds
    attempts: int | None  # invocations before it was given up on
    receive_count: int  # times this dead letter has been read
    event: Any  # the original event, as it was delivered: what a redrive replays
    rule_arn: str | None = None
    target_arn: str | None = None
    receipt_handle: str = field(default="", repr=False, compare=False)
    correlation_id: str | None = None  # from an EventBridge detail (an S3 event has none)

    @property
    def terminal(self) -> bool:
        """A failure the handler itself marked as one that can never succeed (its own
        on-failure record, condition TerminalError): replaying it only brings it back. A
        ConfigurationError is the exception: it succeeds once an operator fixes the setting,
        and a redrive is what follows the fix. Lambda's own records (RetriesExhausted,
        EventAgeExceeded) and EventBridge delivery failures are not terminal."""
        return (self.format == LAMBDA_RECORD and self.condition == TERMINAL_CONDITION
                and self.error_type not in REDRIVABLE_TERMINAL)

    @property
    def error(self) -> str:
        parts = [p for p in (self.error_type, self.error_message) if p]
        return ": ".join(parts) if parts else (self.condition or "unknown error")

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("receipt_handle")
        out["error"] = self.error
        out["terminal"] = self.terminal
        return out


def function_of(function_key: str) -> Function:
    from collections_ops.pipeline import function

    try:
        return function(function_key)
    except KeyError:
        keys = ", ".join(fn.key for fn in FUNCTIONS)
        raise errors.UsageError(f"unknown function {function_key!r}", f"one of {keys}") from None


def sent_at(message: dict[str, Any]) -> float | None:
    raw = message.get("Attributes", {}).get("SentTimestamp")
    try:
        return int(raw) / 1000 if raw is not None else None
    except (TypeError, ValueError):
        return None


def _iso_epoch(text: Any) -> float | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _attribute(message: dict[str, Any], name: str) -> str | None:
    value = message.get("MessageAttributes", {}).get(name)
    if isinstance(value, dict) and value.get("StringValue") is not None:
        return str(value["StringValue"])
    return None


def event_kind(event: Any) -> str:
    if isinstance(event, dict):
        records = event.get("Records")
        if isinstance(records, list) and records and isinstance(records[0], dict) \
                and "s3" in records[0]:
            return "s3"
        if event.get("source") and event.get("detail-type"):
            return "eventbridge"
    return "unknown"


def identity(event: Any) -> tuple[str | None, str | None, str | None]:
    """(user_id, item_id, decoded S3 key) of an original event, as far as it says."""
    kind = event_kind(event)
    if kind == "s3":
        try:
            key = unquote_plus(str(event["Records"][0]["s3"]["object"]["key"]))
        except (KeyError, TypeError, IndexError):
            return None, None, None
        user_id, sep, rest = key.partition("/")
        if not sep or not rest:
            return None, None, key
        stem = rest.rpartition(".")[0]
        return user_id, stem or rest, key
    if kind == "eventbridge":
        detail = event.get("detail")
        if isinstance(detail, str):
            with contextlib.suppress(json.JSONDecodeError):
                detail = json.loads(detail)
        if isinstance(detail, dict):
            user, item = detail.get("user_id"), detail.get("item_id")
            return (str(user) if user is not None else None,
                    str(item) if item is not None else None, None)
    return None, None, None


def correlation_of(event: Any) -> str | None:
    """The correlation id an EventBridge event's detail carries (ImageProcessed and
    AnalysisComplete both do); None for anything else."""
    if event_kind(event) != "eventbridge":
        return None
    detail = event.get("detail")
    if isinstance(detail, str):
        with contextlib.suppress(json.JSONDecodeError):
            detail = json.loads(detail)
    value = detail.get("correlation_id") if isinstance(detail, dict) else None
    return value if isinstance(value, str) and value else None


def decode(fn: Function, message: dict[str, Any]) -> FailedEvent:
    """Read one dead letter, whichever of the formats it is in."""
    attrs = message.get("Attributes", {})
    common: dict[str, Any] = {
        "function_key": fn.key, "stage": fn.stage, "message_id": message.get("MessageId", ""),
        "receipt_handle": message.get("ReceiptHandle", ""),
        "receive_count": int(attrs.get("ApproximateReceiveCount", 0) or 0),
    }
    sent = sent_at(message)
    try:
        body = json.loads(message.get("Body", ""))
    except (json.JSONDecodeError, TypeError):
        return FailedEvent(**common, format=UNREADABLE, condition=None, error_type=None,
                           error_message="the dead letter's body is not JSON", user_id=None,
                           item_id=None, key=None, event_kind="unknown", failed_at=sent,
                           attempts=None, event=None)

    if isinstance(body, dict) and isinstance(body.get("requestContext"), dict) \
            and "requestPayload" in body:
        context = body["requestContext"]
        response = body.get("responsePayload")
        response = response if isinstance(response, dict) else {}
        event = body["requestPayload"]
        user_id, item_id, key = identity(event)
        attempts = context.get("approximateInvokeCount")
        return FailedEvent(
            **common, format=LAMBDA_RECORD, condition=context.get("condition"),
            error_type=response.get("errorType"), error_message=response.get("errorMessage"),
            user_id=user_id, item_id=item_id, key=key, event_kind=event_kind(event),
            failed_at=_iso_epoch(body.get("timestamp")) or sent,
            attempts=int(attempts) if isinstance(attempts, int | str) and str(attempts).isdigit()
            else None,
            event=event, correlation_id=correlation_of(event))

    user_id, item_id, key = identity(body)
    if _attribute(message, "ERROR_CODE") is not None or _attribute(message, "RULE_ARN"):
        return FailedEvent(
            **common, format=EVENTBRIDGE_DLQ, condition=_attribute(message, "ERROR_CODE"),
            error_type=_attribute(message, "ERROR_CODE"),
            error_message=_attribute(message, "ERROR_MESSAGE"), user_id=user_id,
            item_id=item_id, key=key, event_kind=event_kind(body), failed_at=sent,
            attempts=None, event=body, rule_arn=_attribute(message, "RULE_ARN"),
            target_arn=_attribute(message, "TARGET_ARN"), correlation_id=correlation_of(body))
    return FailedEvent(
        **common, format=LAMBDA_DLQ, condition=_attribute(message, "ErrorCode"),
        error_type=_attribute(message, "ErrorCode"),
        error_message=_attribute(message, "ErrorMessage"), user_id=user_id, item_id=item_id,
        key=key, event_kind=event_kind(body), failed_at=sent, attempts=None, event=body,
        correlation_id=correlation_of(body))
