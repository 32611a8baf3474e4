"""Connections that work through any pooler: no startup `options` (RDS Proxy refuses it:
"feature not supported"), nothing set on the session (a session `SET` pins the client to one
backend), the statement timeout set inside each transaction instead.

Against the real PostgreSQL with pgvector, moto, and PgBouncer in transaction mode
(tests/pgbouncer.py), which refuses `options` as RDS Proxy does and hands a server connection
to another client at every transaction's end: the three handlers and the operations function's
actions run with every connection going through it.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import psycopg
import pytest

from collections_ops import pipeline as definition
from collections_ops.localcloud.lambda_service import lambda_runtime
from tests import images, pgbouncer

LOCAL = definition.environment("local")
TIMEOUT_MS = 300  # the statement timeout these tests set, far below the 15 s of production


@pytest.fixture(scope="module")
def bouncer(migrated_db: str) -> Iterator[pgbouncer.PgBouncer]:
    if pgbouncer.binary() is None:
        pytest.skip("pgbouncer is not installed (make setup installs the Debian package "
                    "`pgbouncer` where apt-get is available)")
    with pgbouncer.running(migrated_db) as running:
        yield running


def _put_database_url(url: str) -> None:
    """The owner's URL and each function's: this PgBouncer logs in to the server as the one
    user its [databases] entry names, so through it every function is that user (what is
    tested here is the pooler's transaction mode, not the roles' grants)."""
    ssm = boto3.client("ssm", region_name="us-east-1")
    for name in ("DATABASE_URL", *(fn.database_url_name for fn in definition.FUNCTIONS)):
        ssm.put_parameter(Name=LOCAL.parameter_name(name), Value=url, Type="SecureString",
                          Overwrite=True)


@pytest.fixture(params=["direct", "pgbouncer"])
def route(request: pytest.FixtureRequest, pipeline: Any, migrated_db: str) -> str:
    """The pipeline's DATABASE_URL: the server's own, or PgBouncer's in front of it."""
    from collections_core import state

    if request.param == "direct":
        return migrated_db
    url: str = request.getfixturevalue("bouncer").url
    _put_database_url(url)
    state.reset()  # no connection cached from the direct URL
    return url


@pytest.fixture
def pooled(pipeline: Any, bouncer: pgbouncer.PgBouncer) -> pgbouncer.PgBouncer:
    """The provisioned pipeline with DATABASE_URL naming PgBouncer."""
    from collections_core import state

    _put_database_url(bouncer.url)
    state.reset()
    return bouncer


@contextlib.contextmanager
def items_locked(url: str) -> Iterator[None]:
    """Another session holds the items table so that every statement on it waits: a statement
    that never ends unless its timeout cancels it."""
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE items IN ACCESS EXCLUSIVE MODE")
        yield
        holder.rollback()


def _port(url: str) -> int | None:
    from urllib.parse import urlsplit

    return urlsplit(url).port


def operations(event: dict[str, Any]) -> dict[str, Any]:
    from collections_core import state

    state.reset()  # a fresh container
    result = lambda_runtime.invoke(definition.OPERATIONS, LOCAL, event)
    assert result.ok, result.error_message
    assert isinstance(result.result, dict)
    return result.result


# ------------------------------------------------------------- the pooler's restriction


def test_the_pooler_refuses_a_startup_options_parameter_as_rds_proxy_does(
        bouncer: pgbouncer.PgBouncer) -> None:
    with pytest.raises(psycopg.OperationalError, match="unsupported startup parameter: options"):
        psycopg.connect(bouncer.url, connect_timeout=5,
                        options="-c statement_timeout=15000").close()
    psycopg.connect(bouncer.url, connect_timeout=5).close()  # without it: admitted


def test_a_transactions_timeout_is_gone_for_the_next_client_of_the_same_backend(
        migrated_db: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """With one server connection, every client's transaction runs on one backend: the
    handlers' timeout ends with their transaction; a session SET would reach the next client
    (behind RDS Proxy it pins instead)."""
    from collections_core import db as core_db
    from collections_core import state

    for key, value in definition.common_env(LOCAL, account=definition.LOCAL_ACCOUNT).items():
        monkeypatch.setenv(key, value)
    with pgbouncer.running(migrated_db, pool_size=1) as single:
        _put_database_url(single.url)
        state.reset()
        with core_db.transaction() as cur:
            cur.execute("SELECT pg_backend_pid(), current_setting('statement_timeout')")
            backend, inside = cur.fetchone()
        with psycopg.connect(single.url, prepare_threshold=None, autocommit=True) as other:
            after = other.execute("SELECT pg_backend_pid(), current_setting('statement_timeout')"
                                  ).fetchone()
            other.execute("SET statement_timeout = 1234")  # what the old code's options did
            with psycopg.connect(single.url, autocommit=True) as third:
                leaked = third.execute("SELECT current_setting('statement_timeout')").fetchone()
            other.execute("RESET statement_timeout")
        state.reset()
    assert inside == "15s"
    assert after == (backend, "0")
    assert leaked == ("1234ms",)


# ------------------------------------------------------------------ the statement timeout


def test_a_handlers_statement_over_the_timeout_is_cancelled_and_retried_later(
        pipeline: Any, db: Any, migrated_db: str, route: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from collections_core import db as core_db

    monkeypatch.setattr(core_db, "STATEMENT_TIMEOUT_MS", TIMEOUT_MS)
    pipeline.upload("user123/held.jpg", images.photo())
    [event] = pipeline.s3_events()

    # WHEN the processor's first statement waits on a lock another session holds
    started = time.monotonic()
    with items_locked(migrated_db):
        result = pipeline.invoke("processor", event)
    waited = time.monotonic() - started

    # THEN the server cancels it at the transaction's timeout: retryable, nothing dead-lettered
    assert not result.ok and result.error_type == "RetryableError", result
    assert result.error_message.startswith("database statement timed out: "), result
    assert waited < 10, f"cancelled at {TIMEOUT_MS} ms, not at the 15 s default ({waited:.1f} s)"
    assert pipeline.receive("processor", dlq=True, wait=0) == []
    # AND the connection (the route's) carries no startup option and nothing on its session
    conn = core_db.connection()
    assert conn.info.port == (_port(route) or conn.info.port)
    assert conn.info.get_parameters().get("options") in (None, "")
    assert conn.execute("SHOW statement_timeout").fetchone() == ("0",)
    conn.rollback()
    # AND the next delivery, with the lock gone, stores the item
    assert pipeline.invoke("processor", event).ok
    assert db.execute("SELECT count(*) FROM items WHERE id = 'held'").fetchone() == (1,)


def test_an_operations_query_over_the_timeout_is_cancelled_and_retryable(
        pipeline: Any, migrated_db: str, route: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # collections_core.queries, the very module the operations handler imported
    queries = lambda_runtime.load_handler(definition.OPERATIONS).__globals__["queries"]

    monkeypatch.setattr(queries, "QUERY_TIMEOUT_MS", TIMEOUT_MS)
    started = time.monotonic()
    with items_locked(migrated_db):
        answer = operations({"action": "status"})
    waited = time.monotonic() - started

    assert answer["ok"] is False and answer["kind"] == "unreachable", answer
    assert answer["error"].startswith("database statement timed out: "), answer
    assert waited < 10, f"cancelled at {TIMEOUT_MS} ms, not at the 15 s default ({waited:.1f} s)"
    assert operations({"action": "status"})["ok"] is True


# ------------------------------------------------------- everything through PgBouncer


def test_an_upload_flows_through_all_three_handlers_through_the_pooler(
        pipeline: Any, db: Any, pooled: pgbouncer.PgBouncer) -> None:
    from collections_core import db as core_db

    for n in range(3):  # more uploads than the pool's server connections
        results = pipeline.run_to_end(f"user123/pooled-{n}.jpg", images.photo(seed=n))
        assert set(results) == {"processor", "analyzer", "embedder"}
        assert all(r.ok for r in results.values()), results
    assert core_db.connection().info.port == _port(pooled.url)
    core_db.connection().rollback()
    assert db.execute("SELECT count(*) FROM items i JOIN analyses a ON a.item_id = i.id"
                      " JOIN embeddings e ON e.item_id = i.id WHERE i.user_id = 'user123'"
                      ).fetchone() == (3,)


@pytest.fixture
def fresh_pooled_db(database_url: str, moto_endpoint: str, monkeypatch: pytest.MonkeyPatch,
                    bouncer: pgbouncer.PgBouncer) -> Iterator[str]:
    """An empty database of its own, its DATABASE_URL naming it through PgBouncer."""
    from tests.moto_server import reset_moto

    for key, value in definition.common_env(LOCAL, account=definition.LOCAL_ACCOUNT).items():
        monkeypatch.setenv(key, value)
    name = f"pool_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    reset_moto(moto_endpoint)
    url = bouncer.with_database(name)
    _put_database_url(url)
    yield url
    with psycopg.connect(database_url, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        for fn in definition.FUNCTIONS:  # the migration's roles are the server's
            admin.execute(f'DROP ROLE IF EXISTS "{fn.database_role(name)}"')


def test_migrate_and_status_through_the_pooler(fresh_pooled_db: str) -> None:
    from collections_core import migrate

    versions = [v for v, _ in migrate.migrations()]
    before = operations({"action": "status"})
    assert before["ok"] is True, before
    assert before["result"]["pending"] == versions

    applied = operations({"action": "migrate"})
    assert applied["ok"] is True, applied
    assert applied["result"] == {"applied": versions, "pending": [],
                                 "credentials_written": ["processor", "analyzer", "embedder"]}
    again = operations({"action": "migrate"})
    assert again["result"] == {"applied": [], "pending": [], "credentials_written": []}

    status = operations({"action": "status"})["result"]
    assert [a["version"] for a in status["applied"]] == versions
    assert status["tables"] == {"items": 0, "analyses": 0, "embeddings": 0}
    assert "embeddings_hnsw_1024" in status["indexes"]


def test_every_named_query_answers_through_the_pooler(
        pipeline: Any, pooled: pgbouncer.PgBouncer) -> None:
    from collections_ops.services import search

    pipeline.run_to_end("user123/test-image.jpg", images.photo())
    settings = pipeline.env
    vector = search.embed_query("a photo", provider=settings.embedding_provider,
                                model=settings.embedding_model)
    requests = {
        "find_items": {"item_id": "test-image"},
        "item_rows": {"item_id": "test-image", "user_id": "user123"},
        "search": {"vector": vector, "model": settings.embedding_model,
                   "dimensions": len(vector), "user_id": "user123", "limit": 2},
        "database_check": {},
        "reconcile_rows": {"table": "items"},
        "usage": {"since": 0},
        "embedding_models": {},
    }
    assert set(requests) == set(definition.OPERATIONS_QUERIES), "every query is asked"
    answers = {}
    for name, params in requests.items():
        answer = operations({"action": "query", "query": name, "params": params})
        assert answer["ok"] is True, (name, answer)
        answers[name] = answer["result"]

    assert answers["find_items"] == [{"user_id": "user123", "id": "test-image"}]
    assert answers["item_rows"]["embedding"]["stored_dimensions"] == len(vector)
    assert [h["item_id"] for h in answers["search"]] == ["test-image"]
    assert answers["database_check"]["pending"] == []
    assert [r["id"] for r in answers["reconcile_rows"]["rows"]] == ["test-image"]
    assert answers["usage"]["images"] == 1


def test_a_migration_waits_for_a_held_table_lock_only_until_its_lock_timeout(
        fresh_pooled_db: str, database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from urllib.parse import urlsplit

    from collections_core import migrate

    assert operations({"action": "migrate"})["ok"] is True
    direct = urlsplit(database_url)._replace(path=urlsplit(fresh_pooled_db).path).geturl()
    with psycopg.connect(direct, autocommit=True) as admin:  # 0004 is pending again
        admin.execute("DELETE FROM schema_migrations WHERE version = '0004_usage'")
    monkeypatch.setattr(migrate, "LOCK_TIMEOUT_MS", TIMEOUT_MS)

    # WHEN a session of the pipeline holds a lock on analyses, which 0004 alters
    started = time.monotonic()
    with psycopg.connect(direct) as reader:
        reader.execute("LOCK TABLE analyses IN ACCESS SHARE MODE")
        answer = operations({"action": "migrate"})
        reader.rollback()
    waited = time.monotonic() - started

    # THEN the migration gives up at its lock timeout, retryable, and applied nothing
    assert answer["ok"] is False and answer["kind"] == "unreachable", answer
    assert answer["error"].startswith("database lock not granted in time: "), answer
    assert waited < 10, f"gave up at {TIMEOUT_MS} ms, not the 10 s default ({waited:.1f} s)"
    status = operations({"action": "status"})["result"]
    assert status["pending"] == ["0004_usage"]


def test_the_clis_direct_route_verifies_searches_and_migrates_through_the_pooler(
        pipeline: Any, pooled: pgbouncer.PgBouncer) -> None:
    from collections_ops.context import open_database
    from collections_ops.services import search, verify
    from collections_ops.services.dataroute import DirectRoute

    # GIVEN an upload stored through the pooler, and the CLI's connection naming PgBouncer
    # as `collections verify/search/db` on this machine open it (autocommit, context.py)
    pipeline.run_to_end("user123/cli-route.jpg", images.photo(seed=7))
    with open_database(pooled.url) as conn:
        route = DirectRoute(conn)
        # WHEN verify, search, db migrate and db status run over it, six times each (past
        # psycopg's five runs before it would prepare a statement, and on whatever server
        # connection the pooler hands out next)
        for _ in range(6):
            report = verify.through(route, pipeline.client("s3"), "cli-route", user_id="user123")
            vector = search.embed_query("a photo", provider=pipeline.env.embedding_provider,
                                        model=pipeline.env.embedding_model)
            hits = route.search(vector, model=pipeline.env.embedding_model,
                                dimensions=len(vector), user_id="user123", limit=3)
            applied = route.migrate()
            status = route.status()
            # THEN each answers as it does on a direct connection
            assert report.ok, [c for c in report.checks if not c.ok]
            assert [h.item_id for h in hits][:1] == ["cli-route"]
            assert applied == [] and status["pending"] == []
