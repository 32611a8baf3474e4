"""How the CLI's database commands reach the database: directly, or through the operations
function inside the database's VPC.

A private database (mode `rds`, or `existing` inside a VPC) admits only the functions' security
group: from the operator's machine a connection times out. The operations function
(`collections-<env>-OperationsLambda`, lambdas/operations/handler.py) sits in that VPC and
answers a closed vocabulary -- `migrate`, `status` and a few named read-only queries
(collections_core.queries, which the direct route runs on its own connection) -- so
`db migrate`, `db status`, `verify`, `search`, `reconcile`, `replay`, `cost` and doctor's
database checks work either way.

The route is chosen by trying: a direct connection first (a DATABASE_URL in the environment,
e.g. through an SSM port-forwarding tunnel, or the SSM parameter), and the operations function
when that fails. Every result says which route answered, so an operator knows whether they saw
the database from their laptop or from inside the VPC.

Both routes return the same types (`VerifyReport`, `SearchHit`, `Finding`, a status dict in the
operations function's shape), so commands and renderers do not know which one ran.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Literal, Protocol

from collections_ops import aws, errors

RouteKind = Literal["direct", "operations"]
Invoker = Callable[[dict[str, Any]], dict[str, Any]]


class Route(Protocol):
    kind: RouteKind
    description: str

    def migrate(self) -> list[str]: ...
    def status(self) -> dict[str, Any]: ...
    def find_items(self, item_id: str) -> list[tuple[str, str]]: ...
    def item_rows(self, item_id: str, user_id: str) -> dict[str, Any]: ...
    def search(self, vector: Sequence[float], *, model: str, dimensions: int,
               user_id: str | None, limit: int) -> list[Any]: ...
    def database_check(self) -> dict[str, Any]: ...
    def reconcile_page(self, table: str, *, user_id: str | None, item_id: str | None,
                       after: list[str] | None, limit: int) -> dict[str, Any]: ...
    def usage(self, *, since_ms: int, until_ms: int | None,
              user_id: str | None) -> dict[str, Any]: ...
    def delete_embeddings(self, ids: list[int]) -> bool: ...
    def embedding_models(self) -> list[dict[str, Any]]: ...


# --------------------------------------------------------------------------- direct


class DirectRoute:
    """A connection from this machine."""

    kind: RouteKind = "direct"

    def __init__(self, conn: Any, *, where: str = "this machine",
                 publish: Callable[[Any], list[str]] | None = None) -> None:
        self.conn = conn
        self.description = f"direct connection from {where}"
        # After a migration: give each function's role its password and write its URL, as
        # the operations function's migrate does (services.database.publish_function_urls).
        self.publish = publish

    def delete_embeddings(self, ids: list[int]) -> bool:
        """Remove these embedding rows (reconcile --fix: a vector no stage can repair)."""
        with self.conn.cursor() as cur:
            cur.execute("DELETE FROM embeddings WHERE id = ANY(%s)", (ids,))
        return True

    def migrate(self) -> list[str]:
        from collections_ops.services import database

        applied = database.migrate(self.conn)
        if self.publish is not None:
            self.publish(self.conn)
        return applied

    def status(self) -> dict[str, Any]:
        # The same statements as the operations function's, so both routes report alike.
        from collections_core import queries

        result: dict[str, Any] = queries.status(self.conn)
        return result

    def find_items(self, item_id: str) -> list[tuple[str, str]]:
        from collections_ops.services import verify

        return verify.find_items(self.conn, item_id)

    def item_rows(self, item_id: str, user_id: str) -> dict[str, Any]:
        from collections_ops.services import verify

        return verify.item_rows(self.conn, item_id, user_id)

    def search(self, vector: Sequence[float], *, model: str, dimensions: int,
               user_id: str | None, limit: int) -> list[Any]:
        from collections_ops.services import search

        return search.search(self.conn, vector, model=model, dimensions=dimensions,
                             user_id=user_id, limit=limit)

    def database_check(self) -> dict[str, Any]:
        from collections_core import migrate

        row = self.conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
        return {"reachable": True, "vector": row[0] if row else None,
                "pending": migrate.pending(self.conn)}

    def reconcile_page(self, table: str, *, user_id: str | None, item_id: str | None,
                       after: list[str] | None, limit: int) -> dict[str, Any]:
        # The operations function's own statements and paging, so both routes read alike.
        return self._named("reconcile_rows", {"table": table, "user_id": user_id,
                                              "item_id": item_id, "after": after,
                                              "limit": limit})

    def usage(self, *, since_ms: int, until_ms: int | None,
              user_id: str | None) -> dict[str, Any]:
        # The operations function's statements (`usage`), so both routes sum alike.
        return self._named("usage", {"since": since_ms, "until": until_ms, "user_id": user_id})

    def embedding_models(self) -> list[dict[str, Any]]:
        return list(self._named("embedding_models", {})["models"])

    def _named(self, name: str, params: dict[str, Any]) -> dict[str, Any]:
        """One of the operations function's named queries, run on this connection: its own
        check of the parameters, its statements, its refusals as this CLI's errors."""
        from collections_core import queries
        from collections_core.errors import PipelineError

        query = queries.QUERIES[name]
        try:
            checked = query.check(params)
        except ValueError as exc:
            raise errors.UsageError(f"{name}: {exc}") from None
        try:
            return dict(query.run(self.conn, checked))
        except PipelineError as exc:
            raise errors.DatabaseError(exc.reason, exc.hint) from None


# --------------------------------------------------------------------------- operations


class OperationsRoute:
    """The operations function, invoked synchronously with the handler's request shape."""

    kind: RouteKind = "operations"

    def __init__(self, invoke: Invoker, function_name: str, *,
                 because: str | None = None) -> None:
        self._invoke = invoke
        self.function_name = function_name
        self.because = because  # why the direct route was not taken
        self.description = f"operations function {function_name}"

    def delete_embeddings(self, ids: list[int]) -> bool:
        return False  # the operations function answers read-only queries: it deletes nothing

    def call(self, action: str, query: str | None = None,
             params: dict[str, Any] | None = None) -> Any:
        request: dict[str, Any] = {"action": action}
        if query is not None:
            request.update(query=query, params=params or {})
        try:
            response = self._invoke(request)
        except errors.NotFound as exc:
            if self.because is None:
                raise
            raise errors.DatabaseError(f"the database is not reachable directly "
                                       f"({self.because}) and {exc.message}", exc.hint) from None
        if not isinstance(response, dict):
            raise errors.CollectionsError(f"{self.function_name} answered something that is "
                                          "not a JSON object",
                                          "check that its code matches this CLI")
        if response.get("ok"):
            return response.get("result")
        message = f"{self.function_name}: {response.get('error') or 'failed'}"
        hint = response.get("hint")
        kind = response.get("kind")
        if kind == "usage":
            raise errors.CollectionsError(message, hint or "the function's code and this "
                                          "CLI differ: redeploy")
        raise errors.DatabaseError(message, hint)

    def migrate(self) -> list[str]:
        return [str(v) for v in self.call("migrate").get("applied", [])]

    def status(self) -> dict[str, Any]:
        return dict(self.call("status"))

    def find_items(self, item_id: str) -> list[tuple[str, str]]:
        rows = self.call("query", "find_items", {"item_id": item_id})
        return [(str(r["user_id"]), str(r["id"])) for r in rows]

    def item_rows(self, item_id: str, user_id: str) -> dict[str, Any]:
        return dict(self.call("query", "item_rows", {"item_id": item_id, "user_id": user_id}))

    def search(self, vector: Sequence[float], *, model: str, dimensions: int,
               user_id: str | None, limit: int) -> list[Any]:
        from collections_ops.services.search import SearchHit

        rows = self.call("query", "search", {
            "vector": [float(v) for v in vector], "model": model, "dimensions": dimensions,
            "user_id": user_id, "limit": limit})
        return [SearchHit(item_id=r["item_id"], user_id=r["user_id"], category=r["category"],
                          summary=r["summary"], distance=float(r["distance"])) for r in rows]

    def database_check(self) -> dict[str, Any]:
        return dict(self.call("query", "database_check", {}))

    def reconcile_page(self, table: str, *, user_id: str | None, item_id: str | None,
                       after: list[str] | None, limit: int) -> dict[str, Any]:
        return dict(self.call("query", "reconcile_rows", {
            "table": table, "user_id": user_id, "item_id": item_id, "after": after,
            "limit": limit}))

    def usage(self, *, since_ms: int, until_ms: int | None,
              user_id: str | None) -> dict[str, Any]:
        return dict(self.call("query", "usage", {"since": since_ms, "until": until_ms,
                                                 "user_id": user_id}))

    def embedding_models(self) -> list[dict[str, Any]]:
        return list(self.call("query", "embedding_models", {})["models"])


RECONCILE_PAGE_ROWS = 5000  # the operations function's maximum; its 4 MB cap may end a page first


def reconcile_rows(route: Route, table: str, *, user_id: str | None = None,
                   item_id: str | None = None) -> list[dict[str, Any]]:
    """Every row of `table` that reconcile compares (of one user, one item, or all), page
    after page through whichever route answers. Rows come as JSON gives them (timestamps as
    ISO 8601 text), the same from both routes."""
    rows: list[dict[str, Any]] = []
    after: list[str] | None = None
    while True:
        page = route.reconcile_page(table, user_id=user_id, item_id=item_id, after=after,
                                    limit=RECONCILE_PAGE_ROWS)
        rows.extend(page.get("rows") or [])
        following = page.get("next")
        if not following:
            return rows
        if following == after or not page.get("rows"):
            raise errors.CollectionsError(f"paging {table} did not advance (at {after})",
                                          "check that the operations function's code matches "
                                          "this CLI")
        after = following


# Actions the CLI must not send twice: a retried `migrate` whose first try is still running
# (the client gave up waiting, not the function) starts the migration again beside it.
NOT_IDEMPOTENT = frozenset({"migrate"})


def lambda_invoker(lam: Any, function_name: str, *, once: Any = None) -> Invoker:
    """Invoke the function with boto3 (RequestResponse) and return its JSON answer. `once`, a
    client without retries, sends the actions that are not idempotent."""

    def invoke(request: dict[str, Any]) -> dict[str, Any]:
        client = once if once is not None and request.get("action") in NOT_IDEMPOTENT else lam
        try:
            response = client.invoke(FunctionName=function_name,
                                     InvocationType="RequestResponse",
                                     Payload=json.dumps(request).encode())
        except Exception as exc:
            if aws.is_not_found(exc):
                raise errors.NotFound(f"operations function {function_name} does not exist",
                                      "deploy the environment with this CLI's version") from None
            raise
        body = response["Payload"].read().decode("utf-8", errors="replace")
        if response.get("FunctionError"):
            try:
                detail = json.loads(body).get("errorMessage") or body
            except (json.JSONDecodeError, AttributeError):
                detail = body
            raise errors.DatabaseError(f"{function_name} failed: {str(detail)[:300]}",
                                       f"see `aws logs tail /aws/lambda/{function_name}`")
        try:
            answer = json.loads(body)
        except json.JSONDecodeError:
            raise errors.CollectionsError(f"{function_name} answered with no JSON") from None
        return answer if isinstance(answer, dict) else {"ok": False, "error": str(answer)}

    return invoke


# --------------------------------------------------------------------------- choosing


def choose(*, connect: Callable[[], Any],
           operations: Callable[[str], OperationsRoute] | None,
           publish: Callable[[Any], list[str]] | None = None) -> Route:
    """The direct route if a connection can be made, else the operations function (built by
    `operations(reason the direct route failed)`).

    `operations` is None where the target has no such function (the local cloud): the direct
    error then stands.
    """
    try:
        return DirectRoute(connect(), publish=publish)
    except (errors.DatabaseError, errors.ConfigError) as exc:
        if operations is None:
            raise
        return operations(exc.message)
