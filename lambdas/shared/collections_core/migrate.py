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
"""

from __future__ import annotations

from importlib import resources
from typing import Any

LOCK_ID = 4_242_001  # pg_advisory_xact_lock key for migrations
LOCK_TIMEOUT_MS = 10_000
MIGRATION_STATEMENT_TIMEOUT_MS = 240_000
_SET_LOCAL = "SELECT set_config(%s, %s, true)"


def migrations() -> list[tuple[str, str]]:
    folder = resources.files("collections_core") / "migrations"
    files = sorted((p for p in folder.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name)
    return [(p.name.removesuffix(".sql"), p.read_text(encoding="utf-8")) for p in files]


def apply(conn: Any) -> list[str]:
    """Apply pending migrations on a psycopg connection; return the versions applied."""
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
            cur.execute(sql)
            cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied


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
