"""The database's in-VPC operator: migrations on every deploy, and the CLI's database commands
when the database is reachable only from inside its VPC.

A private database (database mode `rds`, or `existing` inside a VPC) admits connections only
from the functions' security group, so `collections db migrate`, `db status`, `verify`,
`search` and `doctor` cannot connect from the operator's machine. They invoke this function
instead (`collections-<env>-OperationsLambda`, synchronously: `InvocationType=RequestResponse`),
and CloudFormation invokes it as a custom resource on every deploy that changes the code or the
schema, so the schema is applied before the pipeline's `live` aliases move.

The vocabulary is closed: an action, and for `query` one of a few named, read-only queries with
typed parameters. No request can carry SQL.

Request (the Lambda payload, JSON):

    {"action": "migrate"}
    {"action": "status"}
    {"action": "query", "query": "<name>", "params": {...}}

Queries and their parameters (unknown parameters are refused):

    find_items      {"item_id": str}
                    -> [{"user_id": str, "id": str}, ...]  newest first (verify picks the user)
    item_rows       {"item_id": str, "user_id": str}
                    -> {"item": {...} | null, "analysis": {...} | null,
                        "embedding": {...} | null}  -- the rows `collections verify` checks,
                       with the same columns as its direct SQL (embedding: stored_dimensions,
                       norm; never the vector itself)
    search          {"vector": [float, ...], "model": str, "dimensions": int,
                     "user_id": str | null = null, "limit": int = 10, "ef_search": int = 100,
                     "exact": bool = false}
                    -> [{"item_id", "user_id", "category", "summary", "distance"}, ...]
                       nearest first (the CLI embeds the query text; the vector travels here)
    database_check  {}
                    -> {"reachable": true, "vector": "<extversion>" | null,
                        "pending": ["0003_...", ...]}  -- the doctor's database checks
    reconcile_rows  {"table": "items" | "analyses" | "embeddings", "user_id": str | null,
                     "item_id": str | null, "after": [str, ...] | null, "limit": int = 2000}
                    -> {"rows": [{...}, ...], "next": [str, ...] | null}  -- one page of what
                       `collections reconcile` and `replay` compare (no vectors, no raw model
                       output), in the table's unique order; at most `limit` (<= 5000) rows
                       and 4 MB of JSON, far below Lambda's 6 MB response limit; pass `next`
                       as `after` for the following page until it is null
    usage           {"since": int, "until": int | null = null, "user_id": str | null = null}
                    -> {"usage": [{"stage": "analyzer" | "embedder", "provider", "model",
                                   "rows", "unreported", "input_tokens", "output_tokens"}, ...],
                        "images": int}  -- what `collections cost` prices: the tokens recorded
                       with the rows written in the window (epoch milliseconds, `until`
                       excluded), summed in SQL per stage, model and provider, and the items
                       written in it; a few groups whatever the row count
    embedding_models {}
                    -> {"models": [{"model", "dimensions", "state": "active" | "filling" |
                                    "retired", "index_name", "rows"}, ...]}  -- the models
                       the database holds and the one it searches with (migration 0006)

Response (always a JSON object; the function never raises for a request it can answer):

    {"ok": true, "action": "...", ["query": "...",] "result": <see above>,
     "function": "<function name>", "duration_ms": float}
      migrate -> result {"applied": [versions applied now], "pending": [],
                         "credentials_written": ["processor", ...]}  -- the functions whose
                         own URL (DATABASE_URL_<FUNCTION>) was written: every migrate sets
                         each function role's password and publishes its URL (new, or changed)
      status  -> result {"applied": [{"version": str, "applied_at": iso8601}, ...],
                         "pending": [str, ...],
                         "tables": {"items": int, "analyses": int, "embeddings": int},
                         "indexes": {"<index name>": bytes, ...},
                         "database": {"server_version": str, "vector": str | null}}

    {"ok": false, "action": "..." | null, "error": "one sentence", "hint": "what to do" | null,
     "kind": "usage" | "unreachable" | "failed", "function": "...", "duration_ms": float}
      usage       the request is not in the vocabulary (the CLI's bug or a forged call)
      unreachable the database could not be reached (retry later; check the security groups)
      failed      the database answered with an error (a failed migration, a missing table)

A CloudFormation custom-resource event (`RequestType` + `ResponseURL`) runs `migrate` on
Create and Update -- which also publishes each pipeline function's own database URL, so the
functions need no hand-written one -- (and, in database mode `rds`, writes the `DATABASE_URL`
parameter from the RDS-generated secret when it differs, for the operator's CLI)
and does nothing on Delete; the outcome goes to the ResponseURL, and a failed
migration fails the deploy with the error as its reason.

The database URL is `DATABASE_SECRET_ARN` (the RDS-generated secret: no hand-written URL on the
first deploy; `DATABASE_HOST` names an RDS Proxy endpoint when one is used) or else the
`DATABASE_URL` SSM parameter. Each invocation opens its own connection and closes it: calls are
rare, and an idle container must not hold one of a small instance's ~100 connections
(connection.py). The status and the named queries are collections_core.queries: the CLI's
direct route runs the same ones on its own connection.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import cfn_response
import connection
from collections_core import log, queries
from collections_core.errors import PipelineError, RetryableError

logger = log.get_logger("collections.operations")

ACTIONS = ("migrate", "status", "query")
QUERIES = tuple(queries.QUERIES)


class UsageError(Exception):
    """The request is outside the vocabulary."""


def handler(event: Any, context: Any) -> dict[str, Any]:
    log.clear()
    log.bind(function="operations", request_id=getattr(context, "aws_request_id", None))
    if cfn_response.is_custom_resource_event(event):
        return cfn_response.handle(event, context, migrate=deploy_time_migration)
    started = time.perf_counter()
    action = event.get("action") if isinstance(event, dict) else None
    try:
        action, query, params = parse(event)
        result = run(action, query, params)
        response: dict[str, Any] = {"ok": True, "action": action, "result": result}
        if query is not None:
            response["query"] = query
        outcome = "ok"
    except UsageError as exc:
        response = failure(action, str(exc), "usage",
                           f"actions: {', '.join(ACTIONS)}; queries: {', '.join(QUERIES)}")
        outcome = "refused"
    except RetryableError as exc:
        response = failure(action, exc.reason, "unreachable", exc.hint or
                           "check that the database is running and admits this function's "
                           "security group")
        outcome = "retry"
    except PipelineError as exc:
        response = failure(action, exc.reason, "failed", exc.hint)
        outcome = "failed"
    response["function"] = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "operations")
    response["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    known = response["action"]  # never the caller's raw text
    log.event(logger, f"{known or 'request'}: {outcome}",
              logging.INFO if response["ok"] else logging.WARNING,
              stage="operations", outcome=outcome, action=known,
              query=response.get("query"), duration_ms=response["duration_ms"])
    return response


def failure(action: Any, error: str, kind: str, hint: str | None) -> dict[str, Any]:
    return {"ok": False, "action": action if action in ACTIONS else None,
            "error": log.mask(error), "hint": hint, "kind": kind}


def parse(event: Any) -> tuple[str, str | None, dict[str, Any]]:
    if not isinstance(event, dict):
        raise UsageError("the request must be a JSON object")
    unknown = set(event) - {"action", "query", "params"}
    if unknown:
        raise UsageError(f"unknown request fields: {', '.join(sorted(map(str, unknown)))}")
    action = event.get("action")
    if action not in ACTIONS:
        raise UsageError(f"unknown action {str(action)[:40]!r}")
    params = event.get("params", {})
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise UsageError("params must be a JSON object")
    if action != "query":
        if "query" in event or params:
            raise UsageError(f"{action} takes no query and no params")
        return action, None, {}
    query = event.get("query")
    if query not in queries.QUERIES:
        raise UsageError(f"unknown query {str(query)[:40]!r}")
    try:
        checked = queries.QUERIES[query].check(params)
    except ValueError as exc:
        raise UsageError(f"{query}: {exc}") from None
    return action, query, checked


def deploy_time_migration() -> dict[str, Any]:
    """Migrate, then (database mode `rds`) publish DATABASE_URL for the pipeline."""
    result: dict[str, Any] = run("migrate", None, {})
    result["database_url_written"] = connection.publish_database_url()
    return result


def run(action: str, query: str | None, params: dict[str, Any]) -> Any:
    with connection.connect() as conn:
        if action == "migrate":
            return connection.migrate(conn)
        if action == "status":
            return queries.status(conn)
        assert query is not None
        return queries.QUERIES[query].run(conn, params)
