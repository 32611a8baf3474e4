"""The operations function as a CloudFormation custom resource: deploy-time migrations.

CloudFormation sends Create/Update/Delete events and waits for an answer at the event's
pre-signed `ResponseURL` (an HTTPS PUT of a JSON document). An answer must always be sent,
even when the migration raises: otherwise the stack waits for the resource's service timeout.
A FAILED answer carries the error as its `Reason`, which `cdk deploy` prints as the reason the
deployment failed and rolled back.

The physical id never changes, so an Update never makes CloudFormation delete the "old"
resource, and Delete (stack removal, or the resource leaving the template) leaves the schema.

A rollback's Update does nothing either. When a deploy fails (this migration, or anything else
in the stack), CloudFormation rolls back by sending this resource an Update with the previous
properties. Migrations only move forward, and the schema the new code applied serves the old
code too (every migration is additive); running them again could only fail a second time (the
database that refused the first run still refuses) and leave the stack in
UPDATE_ROLLBACK_FAILED, which needs a manual `continue-update-rollback`. The stack's status says
whether the Update is a rollback (`cloudformation:DescribeStacks` on its own stack).
"""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from collections_core import log

logger = log.get_logger("collections.operations")

MAX_REASON = 3000  # CloudFormation truncates longer reasons
RESPONSE_TIMEOUT_SECONDS = 30
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


def is_custom_resource_event(event: Any) -> bool:
    return isinstance(event, dict) and "RequestType" in event and "ResponseURL" in event


def handle(event: dict[str, Any], context: Any,
           *, migrate: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    request = event.get("RequestType")
    physical_id = str(event.get("PhysicalResourceId")
                      or f"{getattr(context, 'function_name', 'operations')}:schema")
    data: dict[str, str] = {}
    try:
        if request == "Update" and rolling_back(event):
            status, reason = "SUCCESS", ("the stack is rolling back: the schema is left as "
                                         "it is (migrations only move forward)")
        elif request in ("Create", "Update"):
            result = migrate()
            data = {"Applied": ",".join(result["applied"]) or "none"}
            status, reason = "SUCCESS", f"schema up to date (applied: {data['Applied']})"
        elif request == "Delete":
            status, reason = "SUCCESS", "the schema is kept when the resource is removed"
        else:
            status, reason = "FAILED", f"unknown RequestType {str(request)[:40]!r}"
    except Exception as exc:  # every failure must reach CloudFormation as a reason
        status = "FAILED"
        reason = f"migration failed: {getattr(exc, 'reason', None) or exc}"
        hint = getattr(exc, "hint", None)
        if hint:
            reason += f" ({hint})"
    reason = log.mask(reason)[:MAX_REASON]
    body = {"Status": status, "Reason": reason, "PhysicalResourceId": physical_id,
            "StackId": event.get("StackId"), "RequestId": event.get("RequestId"),
            "LogicalResourceId": event.get("LogicalResourceId"), "Data": data}
    log.event(logger, f"custom resource {request}: {status}",
              logging.INFO if status == "SUCCESS" else logging.ERROR, stage="operations",
              outcome="ok" if status == "SUCCESS" else "failed", action="migrate",
              reason=reason)
    send(str(event["ResponseURL"]), body)
    return body


def rolling_back(event: dict[str, Any]) -> bool:
    """Whether the stack that sent `event` is rolling back. Unknown (no stack id, or
    CloudFormation unreachable): False, so the migration runs as it did before."""
    from collections_core import aws

    stack_id = event.get("StackId")
    if not stack_id:
        return False
    try:
        stacks = aws.client("cloudformation").describe_stacks(StackName=str(stack_id))["Stacks"]
    except Exception as exc:  # the check is a courtesy; the migration is the contract
        log.event(logger, "could not read the stack's status", logging.WARNING,
                  stage="operations", outcome="unknown", error=log.mask(str(exc))[:200])
        return False
    status = str(stacks[0].get("StackStatus", "")) if stacks else ""
    return status.endswith("ROLLBACK_IN_PROGRESS")


def send(url: str, body: dict[str, Any]) -> None:
    parts = urlsplit(url)
    # CloudFormation's URL is a pre-signed S3 HTTPS URL; plain HTTP only for a local emulator.
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        raise ValueError("ResponseURL must be an https URL")
    payload = json.dumps(body).encode()
    request = urllib.request.Request(url, data=payload, method="PUT", headers={  # noqa: S310
        # The pre-signed URL was signed without a content type: send none.
        "Content-Type": "", "Content-Length": str(len(payload))})
    with urllib.request.urlopen(request, timeout=RESPONSE_TIMEOUT_SECONDS) as response:  # noqa: S310
        response.read()
