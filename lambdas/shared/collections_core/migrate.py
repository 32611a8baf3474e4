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
recorded only once every index it names is valid. One session builds it: the one that claims it
(a row in schema_migration_claims, written under the advisory lock); a concurrent run waits, up
to BUILD_WAIT_S, for that session to record it, and says `IndexBuildInProgress` (retry later)
if it has not by then. A session-level advisory lock held across the build would pin an RDS
Proxy connection, and a transaction-mode pooler does not keep one. A claim older than
BUILD_WAIT_S is taken over (its session died). A build that was cut off (a killed function, a
cancelled statement) leaves an INVALID index behind: the next run drops it (concurrently) and
builds it again. Such a statement has no statement timeout of its own: SET LOCAL needs a
transaction, and a session SET would pin.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from importlib import resources
from typing import Any

LOCK_ID = 4_242_001  # pg_advisory_xact_lock key for migrations
LOCK_TIMEOUT_MS = 10_000
MIGRATION_STATEMENT_TIMEOUT_MS = 240_000
_SET_LOCAL = "SELECT set_config(%s, %s, true)"
OUTSIDE_TRANSACTION = "-- migrate: outside-transaction"
BUILD_WAIT_S = 240.0  # how long to wait for another session's index build (a statement's time)
BUILD_POLL_S = 0.2
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
    its own by the session that claimed it (see the module's docstring)."""
    applied: list[str] = []
    while True:
        batch, stopped_at = _apply_in_transaction(conn)
        applied += batch
        if stopped_at is None:
            return applied
        version, sql, claimed = stopped_at
        if not claimed:
            _wait_for_record(conn, version, _CONCURRENT_INDEX.findall(sql))
        elif _apply_outside_transaction(conn, version, sql):
            applied.append(version)


def _apply_in_transaction(conn: Any) -> tuple[list[str], tuple[str, str, bool] | None]:
    """Apply the pending migrations up to the first outside-transaction one, which is returned
    (version, sql, claimed) unapplied, for the caller to run after this transaction has
    committed if this session claimed it, or else to wait for the session that did."""
    applied: list[str] = []
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(_SET_LOCAL, ("statement_timeout", f"{MIGRATION_STATEMENT_TIMEOUT_MS}ms"))
        cur.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_ID,))
        cur.execute(_SET_LOCAL, ("lock_timeout", f"{LOCK_TIMEOUT_MS}ms"))
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute(
            "CREATE TABLE IF NOT EXISTS schema_migration_claims ("
            " version text PRIMARY KEY, claimed_at timestamptz NOT NULL DEFAULT now())"
        )
        cur.execute("SELECT version FROM schema_migrations")
        done = {row[0] for row in cur.fetchall()}
        for version, sql in migrations():
            if version in done:
                continue
            if outside_transaction(sql):
                return applied, (version, sql, _claim(cur, version))
            cur.execute(sql)
            cur.execute("INSERT INTO schema_migrations (version) VALUES (%s)", (version,))
            applied.append(version)
    return applied, None


def _claim(cur: Any, version: str) -> bool:
    """Claim an outside-transaction migration, under the advisory lock: one session builds
    it. Two concurrent CREATE INDEX CONCURRENTLY on one table would each wait for the other's
    snapshot while the first's next migration waits for the second's table lock: a deadlock.
    A claim older than BUILD_WAIT_S (its session died) is taken over."""
    cur.execute("INSERT INTO schema_migration_claims (version) VALUES (%s)"
                " ON CONFLICT (version) DO UPDATE SET claimed_at = now()"
                " WHERE schema_migration_claims.claimed_at"
                "       < now() - make_interval(secs => %s)"
                " RETURNING version", (version, BUILD_WAIT_S))
    return cur.fetchone() is not None


@contextlib.contextmanager
def _autocommit(conn: Any) -> Iterator[None]:
    autocommit = conn.autocommit
    conn.autocommit = True  # refused (ProgrammingError) if the caller left a transaction open
    try:
        yield
    finally:
        conn.autocommit = autocommit


_RECORDED_OR_UNCLAIMED = (
    "SELECT EXISTS (SELECT 1 FROM schema_migrations WHERE version = %(v)s)"
    "    OR NOT EXISTS (SELECT 1 FROM schema_migration_claims WHERE version = %(v)s)")


def _wait_for_record(conn: Any, version: str, indexes: list[str]) -> None:
    """Wait, up to BUILD_WAIT_S, for the session that claimed `version` to record it, or to
    give its claim up (its build failed: the caller's next round claims it)."""
    deadline = time.monotonic() + BUILD_WAIT_S
    with _autocommit(conn):
        while not conn.execute(_RECORDED_OR_UNCLAIMED, {"v": version}).fetchone()[0]:
            if time.monotonic() >= deadline:
                raise IndexBuildInProgress(
                    f"migration {version}: index {', '.join(indexes)} is still being built "
                    "by another session; run the migration again when it has finished")
            time.sleep(BUILD_POLL_S)


def _apply_outside_transaction(conn: Any, version: str, sql: str) -> bool:
    """Run an outside-transaction migration this session claimed; True if it recorded it."""
    import psycopg

    indexes = _CONCURRENT_INDEX.findall(sql)
    with _autocommit(conn):
        try:
            return _build_and_record(conn, version, sql, indexes)
        except BaseException:
            # Give the claim up, so that a run right after this failure (a retried deploy, the
            # operator's `db migrate`) builds it rather than waiting for a build nobody runs.
            with contextlib.suppress(psycopg.Error):
                conn.execute("DELETE FROM schema_migration_claims WHERE version = %s",
                             (version,))
            raise


def _build_and_record(conn: Any, version: str, sql: str, indexes: list[str]) -> bool:
    import psycopg

    _wait_while_building(conn, version, indexes)  # a claim taken over from a live build
    for index in indexes:
        _drop_if_abandoned(conn, index)
    for statement in _statements(sql):
        # A session whose claim was taken over may create the same index at that moment.
        with contextlib.suppress(psycopg.errors.UniqueViolation,
                                 psycopg.errors.DuplicateTable):
            conn.execute(statement)
    _wait_while_building(conn, version, indexes)
    invalid = [index for index in indexes if _state(conn, index) != "valid"]
    if invalid:  # another session's build stopped: the next run builds it again
        raise IndexBuildInProgress(
            f"migration {version}: index {', '.join(invalid)} is not valid (another "
            "session's build stopped); run the migration again to rebuild it")
    row = conn.execute("INSERT INTO schema_migrations (version) VALUES (%s) "
                       "ON CONFLICT (version) DO NOTHING RETURNING version",
                       (version,)).fetchone()
    conn.execute("DELETE FROM schema_migration_claims WHERE version = %s", (version,))
    return row is not None


def _wait_while_building(conn: Any, version: str, indexes: list[str]) -> None:
    """Wait, up to BUILD_WAIT_S, while another session builds one of `indexes` (a second
    CREATE INDEX CONCURRENTLY on the table would queue behind the first's table lock with no
    timeout at all); raise IndexBuildInProgress if it is still building then."""
    deadline = time.monotonic() + BUILD_WAIT_S
    while building := [index for index in indexes if _state(conn, index) == "building"]:
        if time.monotonic() >= deadline:
            raise IndexBuildInProgress(
                f"migration {version}: index {', '.join(building)} is still being built by "
                "another session; run the migration again when it has finished")
        time.sleep(BUILD_POLL_S)


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
