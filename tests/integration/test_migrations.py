"""Migrations that build an index do it concurrently, outside a transaction, so the pipeline's
writes go on while it builds; a cut-off build is found and built again; a build still running
elsewhere is never recorded as applied. Real PostgreSQL with pgvector, a database per test."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import psycopg
import pytest

HNSW = "0002_hnsw"
INDEX = "embeddings_hnsw_1024"


@pytest.fixture
def fresh_url(database_url: str) -> Iterator[str]:
    name = f"mig_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield urlsplit(database_url)._replace(path=f"/{name}").geturl()
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _migrate(url: str) -> list[str]:
    from collections_core import migrate

    with psycopg.connect(url) as conn:
        return migrate.apply(conn)


def _index_valid(conn: Any) -> bool | None:
    row = conn.execute("SELECT i.indisvalid FROM pg_index i JOIN pg_class c"
                       " ON c.oid = i.indexrelid WHERE c.relname = %s", (INDEX,)).fetchone()
    return None if row is None else bool(row[0])


def _recorded(conn: Any) -> bool:
    return conn.execute("SELECT count(*) FROM schema_migrations WHERE version = %s",
                        (HNSW,)).fetchone() == (1,)


def _forget_the_index(conn: Any) -> None:
    """The index's migration pending again, the table holding rows already."""
    conn.execute(f"DROP INDEX {INDEX}")
    conn.execute("DELETE FROM schema_migrations WHERE version = %s", (HNSW,))


def _seed(url: str) -> None:
    """An item and its analysis, so that embeddings can be inserted."""
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO items (id, user_id, bucket, original_key)"
                     " VALUES ('x', 'u', 'b', 'u/x.jpg')")
        conn.execute("INSERT INTO analyses (item_id, user_id, category, summary, provider,"
                     " model, raw) VALUES ('x', 'u', 'c', 's', 'p', 'm', '{}')")


def _store_embedding(conn: Any, model: str) -> None:
    conn.execute("INSERT INTO embeddings (item_id, user_id, analysis_id, embedding_model,"
                 " embedding_dimensions, embedding, content_hash)"
                 " SELECT 'x', 'u', id, %s, 1024, array_fill(0.5, ARRAY[1024])::vector, 'h'"
                 " FROM analyses", (model,))


def _writer_open(url: str) -> psycopg.Connection[Any]:
    """A pipeline transaction that has written to embeddings and not yet committed: an index
    build (plain or concurrent) has to wait for it."""
    conn = psycopg.connect(url)
    _store_embedding(conn, "open-writer")
    return conn


def _building(url: str) -> bool:
    """A build of the index in progress, past the point where its catalog entry is committed."""
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM pg_stat_progress_create_index p"
                            " JOIN pg_class c ON c.oid = p.index_relid WHERE c.relname = %s",
                            (INDEX,)).fetchone() != (0,)


def _wait_for(condition: Any, *, deadline_s: float = 60.0) -> None:
    import time

    until = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < until, "timed out waiting"
        time.sleep(0.05)


def _in_thread(target: Any) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["result"] = target()
        except BaseException as exc:  # reported to the test's thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome


def test_a_fresh_database_gets_a_valid_hnsw_index_built_outside_a_transaction(fresh_url):
    from collections_core import migrate

    # GIVEN the index's migration, marked to run outside a transaction
    sql = dict(migrate.migrations())[HNSW]
    assert migrate.outside_transaction(sql) and "CREATE INDEX CONCURRENTLY" in sql
    # WHEN a fresh database is migrated (PostgreSQL refuses CONCURRENTLY in a transaction)
    applied = _migrate(fresh_url)
    # THEN every migration is applied in order, the index valid and recorded, and again is a no-op
    assert applied == [v for v, _ in migrate.migrations()]
    with psycopg.connect(fresh_url) as conn:
        assert _index_valid(conn) is True and _recorded(conn)
    assert _migrate(fresh_url) == []


def test_the_pipelines_writes_go_on_while_the_index_builds(fresh_url):
    _migrate(fresh_url)
    _seed(fresh_url)
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        _forget_the_index(conn)
    # GIVEN a pipeline transaction open on the table, which any index build must wait for
    open_writer = _writer_open(fresh_url)
    try:
        builder, outcome = _in_thread(lambda: _migrate(fresh_url))
        _wait_for(lambda: _building(fresh_url))
        # WHEN another invocation stores an embedding while the build waits (a plain CREATE
        # INDEX would hold a SHARE lock request that queues every insert behind it)
        with psycopg.connect(fresh_url) as other:
            other.execute("SET lock_timeout = '2s'")
            _store_embedding(other, "another-writer")
            other.commit()
        # THEN it committed at once, and the build finishes when the open writer does
        assert "result" not in outcome and builder.is_alive()
    finally:
        open_writer.commit()
        open_writer.close()
    builder.join(60)
    assert outcome.get("result") == [HNSW], outcome
    with psycopg.connect(fresh_url) as conn:
        assert _index_valid(conn) is True and _recorded(conn)


def test_an_abandoned_build_is_dropped_and_built_again(fresh_url):
    _migrate(fresh_url)
    # GIVEN what a cut-off CREATE INDEX CONCURRENTLY leaves: the index INVALID, not recorded
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        conn.execute("UPDATE pg_index SET indisvalid = false WHERE indexrelid = %s::regclass",
                     (INDEX,))
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (HNSW,))
        assert _index_valid(conn) is False
    # WHEN migrate runs again
    assert _migrate(fresh_url) == [HNSW]
    # THEN the index was built anew (IF NOT EXISTS alone would have kept the invalid one)
    with psycopg.connect(fresh_url) as conn:
        assert _index_valid(conn) is True and _recorded(conn)


def test_a_build_still_running_elsewhere_is_not_recorded_as_applied(fresh_url, monkeypatch):
    from collections_core import migrate

    monkeypatch.setattr(migrate, "BUILD_WAIT_S", 1.0)  # production waits 240 s
    _migrate(fresh_url)
    _seed(fresh_url)
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        _forget_the_index(conn)
    open_writer = _writer_open(fresh_url)
    try:
        # GIVEN one migrate's build in progress (waiting for the open writer)
        first, outcome = _in_thread(lambda: _migrate(fresh_url))
        _wait_for(lambda: _building(fresh_url))
        # WHEN a second migrate runs meanwhile and the build outlasts its wait
        with pytest.raises(migrate.IndexBuildInProgress, match=INDEX):
            _migrate(fresh_url)
        # THEN it neither dropped the other's index nor recorded the migration
        with psycopg.connect(fresh_url) as conn:
            assert _index_valid(conn) is False and not _recorded(conn)
    finally:
        open_writer.commit()
        open_writer.close()
    first.join(60)
    assert outcome.get("result") == [HNSW], outcome
    with psycopg.connect(fresh_url) as conn:
        assert _index_valid(conn) is True and _recorded(conn)


def test_a_second_migrate_during_a_build_waits_for_it_and_records_the_version_once(fresh_url):
    _migrate(fresh_url)
    _seed(fresh_url)
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        _forget_the_index(conn)
    open_writer = _writer_open(fresh_url)
    try:
        # GIVEN one migrate's build in progress, and a second migrate started meanwhile
        first, first_outcome = _in_thread(lambda: _migrate(fresh_url))
        _wait_for(lambda: _building(fresh_url))
        second, second_outcome = _in_thread(lambda: _migrate(fresh_url))
    finally:
        # WHEN the build can finish
        open_writer.commit()
        open_writer.close()
    first.join(60)
    second.join(60)
    # THEN both succeed, and the version is applied by exactly one of them
    assert "error" not in first_outcome and "error" not in second_outcome
    assert sorted([*first_outcome["result"], *second_outcome["result"]]) == [HNSW]
    with psycopg.connect(fresh_url) as conn:
        assert _index_valid(conn) is True and _recorded(conn)


def test_a_failed_build_gives_its_claim_up_so_the_next_run_builds_at_once(fresh_url,
                                                                          monkeypatch):
    from collections_core import migrate

    _migrate(fresh_url)
    with psycopg.connect(fresh_url, autocommit=True) as conn:
        _forget_the_index(conn)
    monkeypatch.setattr(migrate, "BUILD_WAIT_S", 2.0)  # a claim left behind would show here
    real = migrate._build_and_record

    def cut_off(*args: Any, **kwargs: Any) -> bool:  # the session's build stops midway
        raise psycopg.OperationalError("server closed the connection unexpectedly")

    # GIVEN a migrate whose build failed after it claimed the migration
    monkeypatch.setattr(migrate, "_build_and_record", cut_off)
    with pytest.raises(psycopg.OperationalError):
        _migrate(fresh_url)
    with psycopg.connect(fresh_url) as conn:
        assert conn.execute("SELECT count(*) FROM schema_migration_claims").fetchone() == (0,)
    # WHEN the operator runs it again
    monkeypatch.setattr(migrate, "_build_and_record", real)
    # THEN it builds and records the index (it waited for no one)
    assert _migrate(fresh_url) == [HNSW]
    with psycopg.connect(fresh_url) as conn:
        assert _index_valid(conn) is True and _recorded(conn)
