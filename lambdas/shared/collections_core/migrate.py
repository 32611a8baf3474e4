"""Schema migrations: numbered SQL files applied once each, in order, under an advisory lock.

Used by `collections db migrate` and by the local cloud at start-up. Safe to run concurrently and
repeatedly: an applied migration is recorded in `schema_migrations` in the same transaction.

The migration transaction sets its own timeouts with SET LOCAL (set_config's local form; nothing
on the session, which a pooler would pin or pass on, see db.py): a statement is cancelled after
MIGRATION_STATEMENT_TIMEOUT_MS, below the operations function's 300 s, so the server stops a
long statement rather than Lambda killing the function and leaving it running; and once the
advisory lock is held, a table lock that the pipeline's traffic holds is waited for at most
LOCK_TIMEOUT_MS, so an ALTER queued behind it does not stall every query queued behind the ALTER.
A concurrent migration waits for the advisory lock under the statement timeout only.

A migration whose first line is `-- migrate: outside-transaction` builds an index with
`CREATE INDEX CONCURRENTLY`, which PostgreSQL refuses inside a transaction block and which, unlike
a plain CREATE INDEX, does not block the pipeline's writes while it builds. It runs on its own,
after the migrations before it have committed, one statement per autocommit transaction, and is
recorded only once every index it names is valid. It takes no advisory lock (a session-level lock
would pin an RDS Proxy connection and is not kept by a transaction-mode pooler) and needs none:
a concurrent run finds the index already there. A build that was cut off (a killed function, a
cancelled statement) leaves an INVALID index behind; the next run drops it (concurrently) and
builds it again, unless a build of it is still in progress on the server, in which case the
migration is not recorded and `IndexBuildInProgress` says so (retry later). Such a statement has
no statement timeout of its own: SET LOCAL needs a transaction, and a session SET would pin.
"""

from __future__ import annotations

import re
from importlib import resources
from typing import Any

LOCK_ID = 4_242_001  # pg_advisory_xact_lock key for migrations
LOCK_TIMEOUT_MS = 10_000
MIGRATION_STATEMENT_TIMEOUT_MS = 240_000
_SET_LOCAL = "SELECT set_config(%s, %s, true)"
OUTSIDE_TRANSACTION = "-- migrate: outside-transaction"
_CONCURRENT_INDEX = re.compile(
    r"CREATE\s+(?:UNIQUE\s+)?INDEX\s+CONCURRENTLY\s+(?:IF\s+NOT\s+EXISTS\s+)?(\w+)", re.I)


class IndexBuildInProgress(RuntimeError):
    """An index of an outside-transaction migration is still being built by another session."""


def migrations() -> list[tuple[str, str]]:
    folder = resources.files("collections_core") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text(encoding="utf-8")) for p in files]


def outside_transaction(sql: str) -> bool:
    return sql.lstrip().startswith(OUTSIDE_TRANSACTION)


def apply(conn: Any) -> list[str]:
    """Apply pending migrations on a psycopg connection; return the versions applied.

    The connection must be idle (no transaction open). Migrations run in order: each run of
    ordinary ones in one transaction under the advisory lock, each outside-transaction one on
    its own (see the module's docstring)."""
    applied: list[str] = []
    while True:
        batch, stopped_at = _apply_in_transaction(conn)
        applied += batch
        if stopped_at is None:
            return applied
        _apply_outside_transaction(conn, *stopped_at)
        applied.append(stopped_at[0])


def _apply_in_transaction(conn: Any) -> tuple[list[str], tuple[str, str] | None]:
    """Apply the pending migrations up to the first outside-transaction one, which is returned
    (version, sql) unapplied for the caller to run after this transaction has committed."""
    applied: list[str] = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_SET_LOCAL, ("statement_timeout", f"{MIGRATION_STATEMENT_TIMEOUT_MS}ms"))
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        cur.execute(_SET_LOCAL, ("lock_timeout", f"{LOCK_TIMEOUT_MS}ms"))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for version, sql in migrations():
            if version in done:
                continue
            if outside_transaction(sql):
                return applied, (version, sql)
            cur.execute(sql)
            cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied, None


def _apply_outside_transaction(conn: Any, version: str, sql: str) -> None:
    indexes = _CONCURRENT_INDEX.findall(sql)
    autocommit = conn.autocommit
    conn.autocommit = True  # refused (ProgrammingError) if the caller left a transaction open
    try:
        _refuse_while_building(conn, version, indexes)
        for index in indexes:
            _drop_if_abandoned(conn, index)
        for statement in _statements(sql):
            conn.execute(statement)
        _refuse_while_building(conn, version, indexes)
        conn.execute("INSERT INTO schema_migrations (version) VALUES (%s) "
                     "ON CONFLICT (version) DO NOTHING", (version,))
    finally:
        conn.autocommit = autocommit


def _refuse_while_building(conn: Any, version: str, indexes: list[str]) -> None:
    """Raise while another session builds one of `indexes`: a second CREATE INDEX CONCURRENTLY
    on the table would wait for the first's table lock, with no timeout, for the whole build."""
    building = [index for index in indexes if _state(conn, index) == "building"]
    if building:
        raise IndexBuildInProgress(
            f"migration {version}: index {', '.join(building)} is still being built by "
            "another session; run the migration again when it has finished")


def _statements(sql: str) -> list[str]:
    """The statements of a migration file: split at a `;` that ends a line (these files hold
    DDL only, no function bodies)."""
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in re.split(r";\s*$", body, flags=re.M) if s.strip()]


def _state(conn: Any, index: str) -> str:
    """"missing", "valid", "building" (another session's build is in progress) or "abandoned"
    (an invalid index no session is building: a cut-off CREATE INDEX CONCURRENTLY)."""
    row = conn.execute(
        "SELECT i.indisvalid, EXISTS (SELECT 1 FROM pg_stat_progress_create_index p"
        "                             WHERE p.index_relid = i.indexrelid)"
        "  FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
        " WHERE c.relname = %s AND c.relnamespace = current_schema()::regnamespace",
        (index,)).fetchone()
    if row is None:
        return "missing"
    valid, building = row
    return "valid" if valid else "building" if building else "abandoned"


def _drop_if_abandoned(conn: Any, index: str) -> None:
    from psycopg import sql

    if _state(conn, index) == "abandoned":
        conn.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(index)))


def pending(conn: Any) -> list[str]:
    with conn.cursor() as cur:
        return pending_in(cur)


def pending_in(cur: Any) -> list[str]:
    """The versions not yet applied, read with `cur` (in the caller's transaction)."""
    cur.execute("SELECT to_regclass('schema_migrations') IS NOT NULL")
    row = cur.fetchone()
    if not row or not row[0]:
        return [v for v, _ in migrations()]
    cur.execute("SELECT version FROM schema_migrations")
    done = {r[0] for r in cur.fetchall()}
    return [v for v, _ in migrations() if v not in done]
