"""Test events for each detail-type the pipeline uses, built from the event definitions and
validated before they are sent (the guide's manual `put-events` example is `guide`)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from collections_ops import errors
from collections_ops.pipeline import EVENT_TYPES, EventType

# The guide's "Test EventBridge Manually" entry, verbatim.
GUIDE_EXAMPLE = {"item_id": "test", "user_id": "user123", "bucket": "test",
                 "original_key": "test.jpg"}


def kinds() -> dict[str, EventType]:
    out = {e.detail_type: e for e in EVENT_TYPES}
    out["guide"] = next(e for e in EVENT_TYPES if e.detail_type == "ImageProcessed")
    return out


def sample_detail(kind: str, *, images_bucket: str, item_id: str, user_id: str) -> dict[str, Any]:
    if kind == "guide":
        return dict(GUIDE_EXAMPLE)
    if kind == "ImageProcessed":
        return {"item_id": item_id, "user_id": user_id, "bucket": images_bucket,
                "original_key": f"{user_id}/{item_id}.jpg"}
    if kind == "AnalysisComplete":
        return {"item_id": item_id, "user_id": user_id, "analysis_id": "1"}
    raise KeyError(kind)


def validate(event_type: EventType, detail: Any) -> dict[str, Any]:
    if not isinstance(detail, dict):
        raise errors.UsageError("the detail must be a JSON object")
    missing = [f for f in event_type.required_detail if detail.get(f) in (None, "")]
    if missing:
        raise errors.UsageError(f"{event_type.detail_type} detail is missing {', '.join(missing)}",
                              f"required: {', '.join(event_type.required_detail)}")
    known = set(event_type.required_detail) | set(event_type.optional_detail)
    unknown = sorted(set(detail) - known)
    if unknown:
        raise errors.UsageError(f"{event_type.detail_type} detail has unknown fields: "
                              f"{', '.join(unknown)}", f"known: {', '.join(sorted(known))}")
    return detail


@dataclass(frozen=True)
class SendResult:
    detail_type: str
    source: str
    detail: dict[str, Any]
    event_id: str | None
    error: str | None


def send(events_client: Any, event_type: EventType, detail: dict[str, Any], *,
         bus: str = "default") -> SendResult:
    response = events_client.put_events(Entries=[{
        "Source": event_type.source, "DetailType": event_type.detail_type,
        "Detail": json.dumps(detail), "EventBusName": bus}])
    entry = response["Entries"][0]
    error = None
    if response.get("FailedEntryCount"):
        error = f"{entry.get('ErrorCode')}: {entry.get('ErrorMessage')}"
    return SendResult(event_type.detail_type, event_type.source, detail, entry.get("EventId"),
                      error)
