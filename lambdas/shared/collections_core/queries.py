"""The operator's read-only view of the database: the schema's status and a closed set of
named queries, each a check of its parameters and static statements.

Shared, so that both of the CLI's routes to a database read it with the same statements: the
operations function (lambdas/operations/handler.py) answers them inside the database's VPC, and
the CLI's direct route (services/dataroute.py of the CLI package) runs them on its own
connection; tests/unit/test_operations.py compares the two routes' answers on the same
database. How the operations function connects, migrates and publishes the functions'
credentials is its own (lambdas/operations/connection.py).

Every statement is static text with bound parameters; parameters are checked for type and
range (`NamedQuery.check`, which raises ValueError) before any connection is made. Queries run
in `read_only`: a transaction that is rolled back, with a statement timeout, so a query can
neither write nor hold the database for long. The timeout is the transaction's first
statement, `SET LOCAL` (set_config's local form), never a startup `options` (RDS Proxy
refuses it) nor a session `SET` (which pins the connection): see db.py.

`search` runs search.py's statements and plan, as the CLI's direct route does
(services/search.py of the CLI package). psycopg and pgvector are imported inside the queries
that need them: this module is imported by every function's bundle and by the CLI.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from collections_core import db, models, search
from collections_core import migrate as migrations
from collections_core.errors import TerminalError

QUERY_TIMEOUT_MS = 15_000
MAX_TEXT = 1024  # item and user ids are S3 key parts: at most 1024 bytes
TABLES = ("items", "analyses", "embeddings")
# Written out, not assembled: no SQL text in this package is built at run time.
_COUNT_ROWS = {
    "items": "SELECT count(*) FROM items",
    "analyses": "SELECT count(*) FROM analyses",
    "embeddings": "SELECT count(*) FROM embeddings",
}


def status(conn: Any) -> dict[str, Any]:
    with read_only(conn) as cur:
        cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
        row = cur.fetchone()
        applied: list[dict[str, Any]] = []
        if row and row[0]:
            cur.execute("SELECT version, applied_at FROM schema_migrations ORDER BY version")
            applied = [{"version": r[0], "applied_at": r[1].isoformat()} for r in cur.fetchall()]
        tables: dict[str, int | None] = {}
        for table in TABLES:  # names from this module, never from a request
            cur.execute("SELECT to_regclass(%s) IS NOT NULL", (table,))
            exists = cur.fetchone()
            if exists and exists[0]:
                cur.execute(_COUNT_ROWS[table])
                counted = cur.fetchone()
                tables[table] = int(counted[0]) if counted else 0
            else:
                tables[table] = None
        cur.execute("SELECT indexrelid::regclass::text, pg_relation_size(indexrelid)"
                    " FROM pg_index WHERE indrelid = ANY(ARRAY(SELECT to_regclass(t)"
                    " FROM unnest(%s::text[]) AS t)) ORDER BY 1", (list(TABLES),))
        indexes = {str(r[0]): int(r[1]) for r in cur.fetchall()}
        cur.execute("SELECT current_setting('server_version'),"
                    " (SELECT extversion FROM pg_extension WHERE extname = 'vector')")
        server = cur.fetchone()
        pending = migrations.pending_in(cur)
    return {"applied": applied, "pending": pending, "tables": tables, "indexes": indexes,
            "database": {"server_version": server[0] if server else None,
                         "vector": server[1] if server else None}}


@contextlib.contextmanager
def read_only(conn: Any) -> Iterator[Any]:
    """A cursor in a read-only transaction under QUERY_TIMEOUT_MS, rolled back at the end."""
    with conn.transaction(force_rollback=True), conn.cursor() as cur:
        cur.execute("SET TRANSACTION READ ONLY")
        cur.execute(db.SET_STATEMENT_TIMEOUT, (f"{QUERY_TIMEOUT_MS}ms",))
        yield cur


# ------------------------------------------------------------------------- named queries


def _text(params: dict[str, Any], name: str, *, optional: bool = False) -> str | None:
    value = params.get(name)
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value or len(value.encode()) > MAX_TEXT:
        raise ValueError(f"{name} must be a non-empty string of at most {MAX_TEXT} bytes")
    return value


def _int(params: dict[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"{name} must be an integer from {low} to {high}")
    return value


def _only(params: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(params) - allowed
    if unknown:
        raise ValueError(f"unknown parameters: {', '.join(sorted(map(str, unknown)))}")


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if type(value).__name__ == "Decimal":
        return float(value)
    return value


def _rows(cur: Any) -> list[dict[str, Any]]:
    names = [d.name for d in cur.description]
    return [{n: _plain(v) for n, v in zip(names, row, strict=True)} for row in cur.fetchall()]


def _check_find_items(params: dict[str, Any]) -> dict[str, Any]:
    _only(params, {"item_id"})
    return {"item_id": _text(params, "item_id")}


def _find_items(conn: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    with read_only(conn) as cur:
        cur.execute("SELECT user_id, id FROM items WHERE id = %s ORDER BY updated_at DESC",
                    (params["item_id"],))
        return _rows(cur)


def _check_item_rows(params: dict[str, Any]) -> dict[str, Any]:
    _only(params, {"item_id", "user_id"})
    return {"item_id": _text(params, "item_id"), "user_id": _text(params, "user_id")}


ITEM_SQL = "SELECT * FROM items WHERE id = %s AND user_id = %s"
ANALYSIS_SQL = ("SELECT id, item_id, category, summary, description, tags, provider,"
                " model, updated_at FROM analyses WHERE item_id = %s AND user_id = %s")
EMBEDDING_SQL = ("SELECT id, item_id, embedding_model, embedding_dimensions,"
                 " vector_dims(embedding) AS stored_dimensions,"
                 " vector_norm(embedding) AS norm, analysis_id, updated_at"
                 " FROM embeddings WHERE item_id = %s AND user_id = %s"
                 " ORDER BY updated_at DESC LIMIT 1")


def _item_rows(conn: Any, params: dict[str, Any]) -> dict[str, Any]:
    key = (params["item_id"], params["user_id"])
    out: dict[str, Any] = {}
    with read_only(conn) as cur:
        for name, sql in (("item", ITEM_SQL), ("analysis", ANALYSIS_SQL),
                          ("embedding", EMBEDDING_SQL)):
            cur.execute(sql, key)
            rows = _rows(cur)
            out[name] = rows[0] if rows else None
    return out


def _check_search(params: dict[str, Any]) -> dict[str, Any]:
    _only(params, {"vector", "model", "dimensions", "user_id", "limit", "ef_search", "exact"})
    dimensions = _int(params, "dimensions", 0, 1, search.MAX_DIMENSIONS)
    vector = params.get("vector")
    if (not isinstance(vector, list) or len(vector) != dimensions
            or not all(isinstance(x, int | float) and not isinstance(x, bool)
                       and math.isfinite(x) for x in vector)):
        raise ValueError(f"vector must be a list of {dimensions} finite numbers")
    exact = params.get("exact", False)
    if not isinstance(exact, bool):
        raise ValueError("exact must be true or false")
    return {"vector": [float(x) for x in vector], "model": _text(params, "model"),
            "dimensions": dimensions, "user_id": _text(params, "user_id", optional=True),
            "limit": _int(params, "limit", 10, 1, search.MAX_LIMIT),
            "ef_search": _int(params, "ef_search", 100, 1, search.MAX_LIMIT), "exact": exact}


def _search(conn: Any, params: dict[str, Any]) -> list[dict[str, Any]]:
    from pgvector import Vector  # no numpy: the bundle does not ship it
    from pgvector.psycopg import register_vector

    try:
        # A catalog lookup of its own (a cursor takes the connection's adapters when created).
        register_vector(conn)
    except Exception:
        raise TerminalError("the database has no `vector` extension",
                            hint="run: collections db migrate") from None
    with read_only(conn) as cur:
        rows = search.nearest(cur, q=Vector(params["vector"]), model=params["model"],
                              dimensions=params["dimensions"], user_id=params["user_id"],
                              limit=params["limit"], ef_search=params["ef_search"],
                              exact=params["exact"])
    return [{"item_id": r[0], "user_id": r[1], "category": r[2], "summary": r[3],
             "distance": float(r[4])} for r in rows]


def _check_database_check(params: dict[str, Any]) -> dict[str, Any]:
    _only(params, set())
    return {}


def _database_check(conn: Any, params: dict[str, Any]) -> dict[str, Any]:
    with read_only(conn) as cur:
        cur.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        row = cur.fetchone()
        pending = migrations.pending_in(cur)
    return {"reachable": True, "vector": row[0] if row else None, "pending": pending}


# ------------------------------------------------------------------- reconcile_rows
#
# What `collections reconcile` and `replay` compare: every row of one table (of one user, of one
# item, or all), without vectors or raw model output, a page at a time in the table's unique
# order. A page ends at `limit` rows or at RECONCILE_PAGE_BYTES of JSON, whichever comes first,
# so an answer stays far below Lambda's 6 MB limit for a synchronous response however long the
# rows' texts are; `next` is the cursor of the following page (the last row's unique key), null
# after the last. Each statement is written out whole: the optional filters and the cursor are
# parameters that may be NULL.

RECONCILE_TABLES = ("items", "analyses", "embeddings")
RECONCILE_LIMIT = 2000
RECONCILE_MAX_LIMIT = 5000
RECONCILE_PAGE_BYTES = 4_000_000
_CURSOR_LENGTH = {"items": 2, "analyses": 2, "embeddings": 3}
_RECONCILE_SQL = {
    "items": (
        "SELECT user_id, id, bucket, original_key, thumbnail_bucket, thumbnail_key, etag,"
        " size_bytes, sequencer, correlation_id, updated_at FROM items"
        " WHERE (%(user)s::text IS NULL OR user_id = %(user)s)"
        " AND (%(item)s::text IS NULL OR id = %(item)s)"
        " AND (%(after_user)s::text IS NULL OR (user_id, id) > (%(after_user)s, %(after_item)s))"
        " ORDER BY user_id, id LIMIT %(limit)s"),
    "analyses": (
        "SELECT user_id, item_id, id, source_sequencer, source_etag, category, summary,"
        " description, tags, colors, text_content, provider, model, correlation_id,"
        " updated_at FROM analyses"
        " WHERE (%(user)s::text IS NULL OR user_id = %(user)s)"
        " AND (%(item)s::text IS NULL OR item_id = %(item)s)"
        " AND (%(after_user)s::text IS NULL"
        " OR (user_id, item_id) > (%(after_user)s, %(after_item)s))"
        " ORDER BY user_id, item_id LIMIT %(limit)s"),
    "embeddings": (
        "SELECT user_id, item_id, id, analysis_id, embedding_model, embedding_dimensions,"
        " content_hash, updated_at FROM embeddings"
        " WHERE (%(user)s::text IS NULL OR user_id = %(user)s)"
        " AND (%(item)s::text IS NULL OR item_id = %(item)s)"
        " AND (%(after_user)s::text IS NULL OR (user_id, item_id, embedding_model)"
        " > (%(after_user)s, %(after_item)s, %(after_model)s))"
        " ORDER BY user_id, item_id, embedding_model LIMIT %(limit)s"),
}
_CURSOR_COLUMNS = {"items": ("user_id", "id"), "analyses": ("user_id", "item_id"),
                   "embeddings": ("user_id", "item_id", "embedding_model")}


def _check_reconcile_rows(params: dict[str, Any]) -> dict[str, Any]:
    _only(params, {"table", "user_id", "item_id", "after", "limit"})
    table = params.get("table")
    if table not in RECONCILE_TABLES:
        raise ValueError(f"table must be one of {', '.join(RECONCILE_TABLES)}")
    after = params.get("after")
    if after is not None and (
            not isinstance(after, list) or len(after) != _CURSOR_LENGTH[table]
            or not all(isinstance(v, str) and len(v.encode()) <= MAX_TEXT for v in after)):
        raise ValueError(f"after must be null or the `next` of a {table} page "
                         f"({_CURSOR_LENGTH[table]} strings)")
    return {"table": table, "user_id": _text(params, "user_id", optional=True),
            "item_id": _text(params, "item_id", optional=True), "after": after,
            "limit": _int(params, "limit", RECONCILE_LIMIT, 1, RECONCILE_MAX_LIMIT)}


def reconcile_rows(conn: Any, params: dict[str, Any]) -> dict[str, Any]:
    """One page of `params["table"]` (checked by `_check_reconcile_rows`):
    {"rows": [...], "next": cursor | None}."""
    table = params["table"]
    after = list(params["after"] or []) + [None] * 3
    args = {"user": params["user_id"], "item": params["item_id"], "after_user": after[0],
            "after_item": after[1], "after_model": after[2],
            "limit": params["limit"] + 1}  # one more than a page: whether another follows
    with read_only(conn) as cur:
        cur.execute(_RECONCILE_SQL[table], args)
        rows = _rows(cur)
    page: list[dict[str, Any]] = []
    size = 0
    for row in rows:
        size += len(json.dumps(row)) + 2  # as the Lambda runtime encodes it (ASCII), and ", "
        if size > RECONCILE_PAGE_BYTES:
            if not page:
                raise TerminalError(f"a row of {table} ({row['user_id']}/"
                                    f"{row.get('item_id', row.get('id'))}) is larger than a "
                                    f"page ({RECONCILE_PAGE_BYTES} bytes of JSON)")
            break
        page.append(row)
    page = page[:params["limit"]]
    last = page[-1] if len(page) < len(rows) else None
    return {"rows": page, "next": None if last is None
            else [str(last[c]) for c in _CURSOR_COLUMNS[table]]}


# ------------------------------------------------------------------------------- usage
#
# What `collections cost` prices: the provider usage recorded with the rows written or rewritten
# in a window, summed in SQL per (stage, provider, model) -- how many rows, how many carry no
# usage, their input and output tokens -- and the images that went through (items rows written
# in it). The same statements serve the CLI's direct route (services/dataroute.py), so both
# routes answer alike. The answer is a few groups whatever the row count; it is still capped
# (USAGE_MAX_GROUPS, USAGE_MAX_BYTES) and refused whole rather than cut, so a total is never
# silently short. Bounds are milliseconds since the epoch; `until` and `user_id` may be NULL.

USAGE_MAX_GROUPS = 1000
USAGE_MAX_BYTES = 4_000_000
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
USAGE_SQL = """
SELECT 'analyzer' AS stage, provider, model, count(*) AS rows,
       count(*) - count(input_tokens) AS unreported,
       coalesce(sum(input_tokens), 0) AS input_tokens,
       coalesce(sum(output_tokens), 0) AS output_tokens
FROM analyses
WHERE updated_at >= to_timestamp(%(since)s / 1000.0)
  AND (%(until)s::bigint IS NULL OR updated_at < to_timestamp(%(until)s / 1000.0))
  AND (%(user)s::text IS NULL OR user_id = %(user)s)
GROUP BY provider, model
UNION ALL
SELECT 'embedder', embedding_provider, embedding_model, count(*), count(*) - count(input_tokens),
       coalesce(sum(input_tokens), 0), 0
FROM embeddings
WHERE updated_at >= to_timestamp(%(since)s / 1000.0)
  AND (%(until)s::bigint IS NULL OR updated_at < to_timestamp(%(until)s / 1000.0))
  AND (%(user)s::text IS NULL OR user_id = %(user)s)
GROUP BY embedding_provider, embedding_model
ORDER BY 1, 3, 2
LIMIT %(limit)s
"""
IMAGES_SQL = """
SELECT count(*) FROM items
WHERE updated_at >= to_timestamp(%(since)s / 1000.0)
  AND (%(until)s::bigint IS NULL OR updated_at < to_timestamp(%(until)s / 1000.0))
  AND (%(user)s::text IS NULL OR user_id = %(user)s)
"""


def _check_usage(params: dict[str, Any]) -> dict[str, Any]:
    _only(params, {"since", "until", "user_id"})
    since = _int(params, "since", -1, 0, MAX_EPOCH_MS)
    until = params.get("until")
    if until is not None:
        until = _int(params, "until", 0, since, MAX_EPOCH_MS)
    return {"since": since, "until": until,
            "user_id": _text(params, "user_id", optional=True)}


def usage(conn: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The window's recorded usage (checked by `_check_usage`): {"usage": [{"stage",
    "provider", "model", "rows", "unreported", "input_tokens", "output_tokens"}, ...] by
    stage, model and provider; "images": items written in the window}."""
    import psycopg

    window = {"since": params["since"], "until": params["until"], "user": params["user_id"],
              "limit": USAGE_MAX_GROUPS + 1}
    try:
        with read_only(conn) as cur:
            cur.execute(USAGE_SQL, window)
            groups = _rows(cur)
            cur.execute(IMAGES_SQL, window)
            counted = cur.fetchone()
    except psycopg.errors.UndefinedColumn:
        raise TerminalError("the database has no usage columns yet",
                            hint="run: collections db migrate") from None
    answer = {"usage": groups, "images": int(counted[0]) if counted else 0}
    if len(groups) > USAGE_MAX_GROUPS or len(json.dumps(answer)) > USAGE_MAX_BYTES:
        raise TerminalError(f"the window's usage has more than {USAGE_MAX_GROUPS} (stage, "
                            f"provider, model) groups or {USAGE_MAX_BYTES} bytes of JSON",
                            hint="choose a shorter window or one user")
    return answer


# ------------------------------------------------------------------------ embedding_models


def _check_embedding_models(params: dict[str, Any]) -> dict[str, Any]:
    _only(params, set())
    return {}


def embedding_models(conn: Any, params: dict[str, Any]) -> dict[str, Any]:
    """The database's recorded embedding models (collections_core/models.py, migration 0006),
    each with how many rows it has: {"models": [{"model", "dimensions", "state",
    "index_name", "rows"}, ...]}."""
    import psycopg

    try:
        with read_only(conn) as cur:
            recorded = models.registered(cur)
            cur.execute("SELECT embedding_model, count(*) FROM embeddings"
                        " GROUP BY embedding_model")
            rows = {str(r[0]): int(r[1]) for r in cur.fetchall()}
    except psycopg.errors.UndefinedTable:
        raise TerminalError("the database has no embedding_models table yet",
                            hint="run: collections db migrate") from None
    return {"models": [{**m._asdict(), "rows": rows.get(m.model, 0)} for m in recorded]}


@dataclass(frozen=True)
class NamedQuery:
    check: Callable[[dict[str, Any]], dict[str, Any]]  # raises ValueError
    run: Callable[[Any, dict[str, Any]], Any]


QUERIES: dict[str, NamedQuery] = {
    "find_items": NamedQuery(_check_find_items, _find_items),
    "item_rows": NamedQuery(_check_item_rows, _item_rows),
    "search": NamedQuery(_check_search, _search),
    "database_check": NamedQuery(_check_database_check, _database_check),
    "reconcile_rows": NamedQuery(_check_reconcile_rows, reconcile_rows),
    "usage": NamedQuery(_check_usage, usage),
    "embedding_models": NamedQuery(_check_embedding_models, embedding_models),
}
